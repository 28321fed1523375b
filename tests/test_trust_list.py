"""PLC-2's trust list: *.der, *.pem and *.crt files each hold PEM or DER (told apart by content), and a file there
that is not a certificate is a config error naming it, the running server keeping its last good config."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from aiotlab.simulators.devices.opcua_security import load_security_config, read_certificates
from aiotlab.simulators.yamlconf import ConfigError

from conftest import PlantHandle
from opcua_util import client_cert, connect, node

POLICY = "Basic256Sha256_SignAndEncrypt"


def ca_certificate() -> x509.Certificate:
    """A self-signed CA certificate (basicConstraints CA:TRUE), as `openssl req -x509` makes one."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site CA")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def pem(der_file: Path) -> bytes:
    return x509.load_der_x509_certificate(der_file.read_bytes()).public_bytes(serialization.Encoding.PEM)


def config(folder: Path, trust: str = "trusted") -> Path:
    path = folder / "plc2.yaml"
    path.write_text(f"""
security_policies: [{POLICY}]
reject_unlisted_channels: true
identity_tokens: [username]
users:
  eng1: {{password: eng-pass, role: engineer}}
roles:
  engineer: [read, write, call]
trust_list: {trust}
""")
    return path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("ua-certs")

    async def make() -> dict[str, tuple[Path, Path]]:
        return {n: await client_cert(base / n, n) for n in ("good", "other", "rogue")}

    return asyncio.run(make())


def test_each_suffix_holds_pem_or_der(tmp_path: Path, certs: dict[str, tuple[Path, Path]]) -> None:
    good, other = certs["good"][0], certs["other"][0]
    trust = tmp_path / "trusted"
    trust.mkdir()
    ca = ca_certificate()
    (trust / "grader.crt").write_bytes(pem(good))  # PEM named .crt beside a DER CA: the outsider's case
    (trust / "site-ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    (trust / "other.PEM").write_bytes(other.read_bytes())  # DER content named .PEM
    (trust / "bundle.der").write_bytes(
        b"issued by openssl x509 -text\n" + pem(good) + ca.public_bytes(serialization.Encoding.PEM)
    )
    (trust / "README.txt").write_text("not a certificate, and not named like one: ignored\n")
    cfg = load_security_config(config(tmp_path), tmp_path)
    assert cfg.trust_list == trust.resolve()
    got = {c.public_bytes(serialization.Encoding.DER) for c in cfg.trusted_certificates}
    assert got == {good.read_bytes(), other.read_bytes(), ca.public_bytes(serialization.Encoding.DER)}
    assert len(cfg.trusted_certificates) == 5  # the bundle's two are kept as well


@pytest.mark.parametrize("der", [True, False])
def test_a_crt_alone_is_a_trust_list(tmp_path: Path, certs: dict[str, tuple[Path, Path]], der: bool) -> None:
    """Once refused with "can't create an empty store": asyncua's loader skipped *.crt files."""
    good = certs["good"][0]
    (tmp_path / "trusted").mkdir()
    (tmp_path / "trusted" / "client.crt").write_bytes(good.read_bytes() if der else pem(good))
    cfg = load_security_config(config(tmp_path), tmp_path)
    assert [c.public_bytes(serialization.Encoding.DER) for c in cfg.trusted_certificates] == [good.read_bytes()]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty file"),
        (b"\x30\x82\x01\x00garbage", "neither a PEM certificate nor a DER-encoded X.509 certificate"),
        (b"hello, I am a text file\n", "neither a PEM certificate nor a DER-encoded X.509 certificate"),
        (None, "PEM holding PRIVATE KEY, not a CERTIFICATE"),
        (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", "does not decode"),
    ],
)
def test_a_file_that_is_not_a_certificate_is_named(
    tmp_path: Path, certs: dict[str, tuple[Path, Path]], content: bytes | None, why: str
) -> None:
    good, key = certs["good"]
    trust = tmp_path / "trusted"
    trust.mkdir()
    (trust / "grader.der").write_bytes(good.read_bytes())
    (trust / "client.pem").write_bytes(key.read_bytes() if content is None else content)
    with pytest.raises(ConfigError) as exc:
        load_security_config(config(tmp_path), tmp_path)
    assert str(trust / "client.pem") in exc.value.message and why in exc.value.message
    assert exc.value.line == 9  # the trust_list line


def test_no_certificate_or_no_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not a folder"):
        load_security_config(config(tmp_path), tmp_path)
    (tmp_path / "trusted").mkdir()
    (tmp_path / "trusted" / "grader.cer").write_bytes(b"named otherwise: ignored")
    with pytest.raises(ConfigError, match=r"has no certificates \(\*\.der, \*\.pem, \*\.crt\)"):
        load_security_config(config(tmp_path), tmp_path)


def test_user_certificate_is_read_by_content(tmp_path: Path, certs: dict[str, tuple[Path, Path]]) -> None:
    good = certs["good"][0]
    (tmp_path / "alice.der").write_bytes(pem(good))
    assert read_certificates(pem(good))[0].public_bytes(serialization.Encoding.DER) == good.read_bytes()
    (tmp_path / "plc2.yaml").write_text(
        "security_policies: [Basic256Sha256_SignAndEncrypt]\nidentity_tokens: [x509]\n"
        "users:\n  alice: {certificate: alice.der, role: engineer}\nroles:\n  engineer: [read]\n"
    )
    cfg = load_security_config(tmp_path / "plc2.yaml", tmp_path)
    assert cfg.users["alice"].certificate_sha256 is not None


def test_live_trust_list_formats_and_a_bad_file(own_plant: PlantHandle, certs: dict[str, tuple[Path, Path]]) -> None:
    """Over real OPC UA: the plant trusts what a *.crt / *.pem / *.der file holds, whichever encoding; a
    non-certificate in the folder makes the reload fail naming the file, and PLC-2 keeps its last good config."""
    p = own_plant
    url = p.sheet["plc2"]["endpoint"]
    good, other, rogue = certs["good"], certs["other"], certs["rogue"]
    trust = p.dir / "config" / "trusted"
    trust.mkdir()

    async def session(cert: tuple[Path, Path], name: str) -> None:
        async with connect(url, POLICY, cert, "eng1", "eng-pass", name=name) as c:
            assert isinstance(await (await node(c, "Plant.Heater.Temperature")).read_value(), float)

    async def refused(cert: tuple[Path, Path], name: str) -> None:
        with pytest.raises(Exception):  # noqa: B017 - the refusal surfaces as different errors per version
            await session(cert, name)

    # only a PEM *.crt (once: "can't create an empty store")
    (trust / "grader.crt").write_bytes(pem(good[0]))
    config(p.dir / "config")
    p.reload("plc2")

    async def first() -> None:
        await session(good, "good")
        await refused(other, "other")
        await refused(rogue, "rogue")

    asyncio.run(first())

    # a PEM *.crt beside a DER CA certificate (once: an ASN.1 parse error naming no file), DER content in a *.pem
    (trust / "site-ca.der").write_bytes(ca_certificate().public_bytes(serialization.Encoding.DER))
    (trust / "other.pem").write_bytes(other[0].read_bytes())
    p.reload("plc2")

    async def second() -> None:
        await session(good, "good")
        await session(other, "other")
        await refused(rogue, "rogue")

    asyncio.run(second())

    # a private key in the folder under a certificate's name: refused, naming it; the server runs on unchanged
    (trust / "other.pem").write_bytes(other[1].read_bytes())
    proc = p.reload("plc2", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "other.pem" in out and "not a certificate" in out, out
    asyncio.run(second())


# Kept here because it came with the same outsider report (the lab's candidate edits these files next to plc2.yaml).
@pytest.mark.parametrize("where", ["process", "networks"])
def test_factory_configs_name_only_the_plants_own_addresses(tmp_path: Path, where: str) -> None:
    """fw1.yaml's comment example once gave slot 0's HMI (127.64.0.30) in every plant."""
    import ipaddress
    import re

    from aiotlab.simulators import addressing as ad
    from aiotlab.simulators.configs import ensure_configs
    from aiotlab.simulators.launch import plant_params

    _, spec, params = plant_params("trust-list-test", secret="trust-list-test-secret")
    make = ad.Addresses.for_slot if where == "process" else ad.Addresses.on_networks
    addr = make(7, spec["addressing"])
    ensure_configs(tmp_path, params, addr.hosts, addr.ports)
    own = {ipaddress.ip_network(f"{h.rsplit('.', 1)[0]}.0/24") for h in addr.hosts.values()}
    found = {}
    for f in tmp_path.iterdir():
        for a in re.findall(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])", f.read_text()):
            found[a] = f.name
    assert found, "no address at all: the example lost its HMI address"
    for a, name in found.items():
        assert any(ipaddress.ip_address(a) in net for net in own), f"{name} names {a}, not this plant's"
    assert f"sources: [{addr.hosts['hmi']}/32]" in (tmp_path / "fw1.yaml").read_text()
