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
    (msg,) = problems(write_config(MINIMAL + "\n[attendance]\ntolerance = 2.5\n"))
    assert "attendance.tolerance: expected less than or equal to 2" in msg
    # dlib's scale with the default recognizer: refused, with both ways out.
    (msg,) = problems(write_config(MINIMAL + "\n[attendance]\ntolerance = 0.5\n"))
    assert "off the sface recognizer's scale" in msg and 'recognizer = "dlib"' in msg
    dlib = load_agent_config(
        write_config(MINIMAL + '\n[attendance]\nrecognizer = "dlib"\ntolerance = 0.5\n')
    )
    assert dlib.attendance is not None and dlib.attendance.rule().tolerance == 0.5


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


# --- [screen]: who may see the kiosk page (docs/attendance.md "Access and preview") -------

SCREEN_TOKEN = "0123456789abcdef0123"


def screen_toml(listen: str, extra: str = "") -> str:
    return MINIMAL + f'\n[attendance]\n[screen]\nlisten = "{listen}"\n{extra}'


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8080", "[::]:8080", "192.168.10.20:8080", "kiosk-01.hall.lan:8080"]
)
def test_an_exposed_kiosk_page_needs_a_token_file(write_config, listen):
    path = write_config(screen_toml(listen))
    (msg,) = problems(path)
    assert msg.startswith(f"{path}: screen: listen = '{listen}' is not a loopback address")
    assert 'token_file = "/etc/hall-agent/screen.token"' in msg and "127.0.0.1:8080" in msg


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:8080", "127.0.0.2:8080", "localhost:8080", "[::1]:80"]
)
def test_a_loopback_kiosk_page_needs_no_token(write_config, listen):
    cfg = load_agent_config(write_config(screen_toml(listen)))
    assert not cfg.screen.exposed and cfg.screen.token is None and cfg.screen.preview


def test_the_token_is_read_from_its_file_and_never_shown(tmp_path, write_config):
    secret = tmp_path / "screen.token"
    secret.write_text(SCREEN_TOKEN + "\n")
    secret.chmod(0o640)
    cfg = load_agent_config(
        write_config(screen_toml("0.0.0.0:8080", f'token_file = "{secret}"\npreview = false\n'))
    )
    assert cfg.screen.token == SCREEN_TOKEN and cfg.screen.exposed and not cfg.screen.preview
    assert SCREEN_TOKEN not in repr(cfg) and SCREEN_TOKEN not in cfg.model_dump_json()


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        (None, 0o600, "screen.token_file: file {path} not found"),
        (SCREEN_TOKEN, 0o644, "screen.token_file: {path} is readable by others (mode 0644)"),
        ("\n", 0o600, "screen.token_file: {path} is empty; expected the page's access token"),
        ("short-token", 0o600, "screen.token_file: {path} holds 11 characters; expected 16"),
        ("spaces are not allowed here", 0o600, "holds 27 characters; expected 16 to 256"),
        (SCREEN_TOKEN + "\n" + SCREEN_TOKEN, 0o600, "of A-Z a-z 0-9 . _ ~ - on one line"),
    ],
)
def test_a_bad_token_file_is_one_clear_problem(tmp_path, write_config, content, mode, expected):
    secret = tmp_path / "screen.token"
    if content is not None:
        secret.write_text(content)
        secret.chmod(mode)
    path = write_config(screen_toml("0.0.0.0:8080", f'token_file = "{secret}"\n'))
    (msg,) = problems(path)
    assert msg.startswith(f"{path}: ") and expected.format(path=secret) in msg
    assert "spaces are" not in msg and SCREEN_TOKEN not in msg  # the token is never echoed


def test_an_inline_token_is_refused_without_echo(write_config):
    (msg,) = problems(
        write_config(screen_toml("127.0.0.1:8080", 'token = "hunter2hunter2hunter2"\n'))
    )
    assert "screen.token: unknown key 'token'" in msg and "token_file" in msg
    assert "hunter2" not in msg
