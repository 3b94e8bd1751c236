"""Config parsing and its error messages (docs/config.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.config import ConfigError, agent_schema, load_agent_config
from central.config import central_schema, load_central_config

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """
[device]
id = "kiosk-01"
site = "jiedong"
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    return info.value.problems


def test_minimal_config_gets_defaults(write_config):
    cfg = load_agent_config(write_config(MINIMAL))
    assert cfg.device.timezone == "Asia/Shanghai"
    assert cfg.mqtt.url == "mqtt://127.0.0.1:1883"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("127.0.0.1", 1883, False)
    assert cfg.sync.batch_size == 200
    assert cfg.attendance is None and cfg.pad == []


@pytest.mark.parametrize("name", ["kiosk.toml", "window.toml"])
def test_example_agent_configs_are_valid(name):
    cfg = load_agent_config(REPO / "config" / name)
    assert cfg.device.site == "jiedong"


def test_example_central_config_is_valid():
    cfg = load_central_config(REPO / "config" / "central.toml")
    assert cfg.store.url.startswith("sqlite:///")


def test_unknown_key_names_file_path_and_suggests(write_config):
    path = write_config(
        MINIMAL + '\n[[pad]]\nport = "loop://"\naddress = 1\nwindow = "A01"\nbaud_rate = 9600\n'
    )
    (msg,) = problems(path)
    assert msg.startswith(f"{path}: pad[1].baud_rate: unknown key 'baud_rate'")
    assert "did you mean 'baud'?" in msg


def test_unknown_section_lists_known_ones(write_config):
    (msg,) = problems(write_config(MINIMAL + "\n[mqqt]\nurl = 'mqtt://x'\n"))
    assert "mqqt: unknown key 'mqqt'; did you mean 'mqtt'?" in msg


def test_bad_baud_lists_expected_values(write_config):
    path = write_config(
        MINIMAL + '\n[[pad]]\nport = "loop://"\naddress = 1\nwindow = "A01"\n'
        '\n[[pad]]\nport = "loop://"\naddress = 2\nwindow = "A02"\nbaud = 96000\n'
    )
    (msg,) = problems(path)
    assert msg.startswith(f"{path}: pad[2].baud: expected one of 1200, 2400")
    assert msg.endswith("got 96000")


def test_wrong_type_and_missing_section_are_all_reported(write_config):
    path = write_config('[sync]\nbatch_size = "many"\n')
    msgs = problems(path)
    assert any("device: required key is missing" in m for m in msgs)
    assert any("sync.batch_size: expected a valid integer" in m and "'many'" in m for m in msgs)


def test_bad_id_pattern(write_config):
    (msg,) = problems(write_config('[device]\nid = "Kiosk 01"\nsite = "jiedong"\n'))
    assert "device.id: expected text matching" in msg and "'Kiosk 01'" in msg


def test_out_of_range(write_config):
    (msg,) = problems(write_config(MINIMAL + "\n[attendance]\ntolerance = 1.5\n"))
    assert "attendance.tolerance: expected less than or equal to 1" in msg


def test_toml_syntax_error_has_line(write_config):
    path = write_config(MINIMAL + "\n[mqtt]\nurl = mqtt://oops\n")
    (msg,) = problems(path)
    assert msg.startswith(f"{path}: TOML syntax error:")
    assert "line 7" in msg


def test_missing_file(tmp_path):
    (msg,) = problems(tmp_path / "nope.toml")
    assert msg == f"{tmp_path / 'nope.toml'}: file not found"


def test_bad_timezone(write_config):
    (msg,) = problems(write_config(MINIMAL + 'timezone = "Mars/Olympus"\n'))
    assert "device.timezone" in msg and "IANA" in msg and "Mars/Olympus" in msg


def test_bad_mqtt_url(write_config):
    (msg,) = problems(write_config(MINIMAL + '\n[mqtt]\nurl = "http://broker"\n'))
    assert (
        "mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], got 'http://broker'" in msg
    )


def test_duplicate_pad_address_on_one_bus(write_config):
    path = write_config(
        MINIMAL + '\n[[pad]]\nport = "/dev/ttyS0"\naddress = 3\nwindow = "A01"\n'
        '\n[[pad]]\nport = "/dev/ttyS0"\naddress = 3\nwindow = "A02"\n'
    )
    (msg,) = problems(path)
    assert "pad[2]: address 3 on /dev/ttyS0 is already used by pad[1]" in msg


def test_inline_password_is_refused_without_echo(write_config):
    path = write_config(MINIMAL + '\n[mqtt]\npassword = "hunter2"\n')
    (msg,) = problems(path)
    assert "mqtt.password: unknown key 'password'" in msg
    assert "password_file" in msg
    assert "hunter2" not in msg


def test_secret_file_is_read(tmp_path, write_config):
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    cfg = load_agent_config(write_config(MINIMAL + f'\n[mqtt]\npassword_file = "{secret}"\n'))
    assert cfg.mqtt.password == "s3cret"
    assert "s3cret" not in repr(cfg)


def test_world_readable_secret_is_refused(tmp_path, write_config):
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    (msg,) = problems(write_config(MINIMAL + f'\n[mqtt]\npassword_file = "{secret}"\n'))
    assert "mqtt.password_file" in msg and "readable by others (mode 0644)" in msg
    assert "s3cret" not in msg


def test_missing_ca_file(tmp_path, write_config):
    (msg,) = problems(
        write_config(MINIMAL + f'\n[mqtt]\nurl = "mqtts://b:8883"\nca_file = "{tmp_path}/ca.pem"\n')
    )
    assert f"mqtt.ca_file: file {tmp_path}/ca.pem not found" in msg


def test_schemas_describe_fields():
    schema = agent_schema()
    assert "device" in schema["properties"]
    pad = schema["$defs"]["PadSection"]
    assert pad["additionalProperties"] is False
    assert "description" in pad["properties"]["baud"]
    assert "store" in central_schema()["properties"]


def test_password_in_a_url_is_never_echoed(write_config, tmp_path):
    (msg,) = problems(
        write_config(MINIMAL + '\n[mqtt]\nurl = "mqtts://kiosk-01:S3cretPw@broker/x/y"\n')
    )
    assert "mqtt.url" in msg and "//***@broker" in msg
    assert "S3cretPw" not in msg
    central = write_config('[store]\nurl = "mysql://hall:S3cretPw@db.lan/hall"\n')
    with pytest.raises(ConfigError) as info:
        load_central_config(central)
    assert "store.url" in info.value.problems[0] and "S3cretPw" not in info.value.problems[0]


@pytest.mark.parametrize("password", ["ab/cd", "a b", "p@ss", "x:y"])
def test_redact_url_hides_awkward_passwords(password):
    from agent.config import redact_url

    shown = redact_url(f"mqtts://kiosk-01:{password}@broker.hall.lan:8883/x")
    assert shown == "mqtts://***@broker.hall.lan:8883/x"
