"""Active probes: the grader acting as an attacker or a legitimate user over real sockets, every step bounded.

Probes bind distinct loopback source addresses (check-catalog pitfall 5) so that firewall rules, broker logs and
ground truth can tell the grader's attacker from the HMI or the collector.
"""
