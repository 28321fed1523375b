"""The exam portal: candidates sit the exam in a browser, instructors run it live, assessors read verified reports.

`aiotlab portal EXAM.yaml` serves one exam (FastAPI + Jinja2 on uvicorn). State lives beside the exam's output
(`<out>/portal/`): the clock and every candidate's deadline, submissions, grading and release, an audit log of
every instructor action, staff accounts (hashed). Candidates log in with the credentials `exam up` issued.
"""
