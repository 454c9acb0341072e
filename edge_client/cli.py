"""`python -m edge_client sync|diagnose|history|rollback|status|train|updates|budget`.

State folder: --home, else $EDGE_HOME, else the platform's app data. The upload token is read
from --token-file or $DOPAMINE_HUB_TOKEN, never from the command line (visible in `ps`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edge_client.errors import EdgeError, PhotoQualityError, UngradableReferral
from edge_client.manifest import ManifestError
from edge_client.preprocess import ImageError
from edge_client.privacy_figures import guarantee_text

__all__ = ["main", "TOKEN_ENV"]

TOKEN_ENV = "DOPAMINE_HUB_TOKEN"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help="state folder (default: $EDGE_HOME, else app data)")
    p = argparse.ArgumentParser(prog="python -m edge_client", parents=[common],
                                description="Dopamine edge client: sync a signed model, grade fundus photos offline")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sync", parents=[common], help="fetch and install the hub's latest model")
    s.add_argument("--server", required=True, help="hub URL, e.g. http://127.0.0.1:8000")
    s.add_argument("--key", help="publisher public key (file or base64); pinned on first use")
    s.add_argument("--ca-file", help="CA bundle (PEM) for an https hub with a private CA")
    s.add_argument("--insecure-http", action="store_true",
                   help="allow plain http:// to a host other than this device (a trusted LAN only)")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s = sub.add_parser("diagnose", parents=[common], help="grade one photo on the device")
    s.add_argument("image", type=Path)
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--keep-photo", action="store_true", help="also keep a copy of the photo")
    s.add_argument("--patient", help="patient id (refused attempts per eye count toward 'could not be graded: refer')")
    s.add_argument("--eye", choices=("left", "right"), help="which eye the photo is of")
    s.add_argument("--operator", help="who took the photo")
    s = sub.add_parser("history", parents=[common], help="list stored results (newest first)")
    s.add_argument("--csv", type=Path, help="export to this CSV file instead")
    sub.add_parser("rollback", parents=[common], help="switch back to the previous installed model")
    sub.add_parser("status", parents=[common], help="show the installed model")
    s = sub.add_parser("train", parents=[common], help="train the head under DP on labelled photos (one round)")
    s.add_argument("--labels", required=True, type=Path,
                   help="CSV with the header image,grade,patient (a patient id on every row); paths relative to it")
    s.add_argument("--mode", choices=("personal", "federated"), default="federated",
                   help="personal: keep the head on this device; federated: queue the update (default)")
    s.add_argument("--epsilon", type=float, default=5.0,
                   help="epsilon this round alone may cost each patient in it (default 5)")
    s.add_argument("--budget", type=float, default=None,
                   help="each patient's total epsilon on this device, fixed at the device's first round (default 10); "
                        "it can later be lowered, never raised")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)  # tests only: not private
    s = sub.add_parser("updates", parents=[common], help="the queue of federated updates")
    usub = s.add_subparsers(dest="updates_command", required=True)
    usub.add_parser("list", parents=[common], help="queued updates, newest first")
    u = usub.add_parser("show", parents=[common], help="print the exact JSON an update uploads")
    u.add_argument("id", type=int)
    u.add_argument("--explain", action="store_true", help="say in words what each field tells the hub instead")
    u = usub.add_parser("approve", parents=[common], help="allow one pending update to be uploaded")
    u.add_argument("id", type=int)
    u = usub.add_parser("discard", parents=[common], help="drop a queued update (its epsilon stays spent)")
    u.add_argument("id", type=int)
    u = usub.add_parser("upload", parents=[common], help="upload approved updates (offline: they wait)")
    u.add_argument("--server", required=True, help="hub URL")
    u.add_argument("--token-file", type=Path, help=f"file holding this device's upload token (from `python -m hub "
                                                    f"token issue`); default: ${TOKEN_ENV}")
    u.add_argument("--token", help=argparse.SUPPRESS)  # refused: argv is visible to every user in `ps`
    u.add_argument("--ca-file", help="CA bundle (PEM) for an https hub with a private CA")
    u.add_argument("--insecure-http", action="store_true",
                   help="allow plain http:// to a host other than this device (sends the token in clear)")
    s = sub.add_parser("budget", parents=[common], help="privacy budget of each patient a labels CSV names")
    s.add_argument("--labels", required=True, type=Path, help="CSV with the header image,grade,patient")
    s.add_argument("--all", action="store_true", help="list every patient (default: the 10 most spent)")
    return p


def _privacy_block(obj) -> dict:
    """The privacy fields of a Diagnosis or InstalledModel, as guarantee_text reads them."""
    return {k: getattr(obj, k) for k in ("epsilon", "delta", "accountant", "seeded", "test_build")
            if getattr(obj, k, None) is not None}


def _train(client, args) -> int:
    from edge_client.device_guarantee import patient_guarantee, scope_lines
    from edge_client.privacy_figures import TEST_BUILD_TEXT, epsilon_str
    from edge_client.training import RoundSettings

    settings = RoundSettings(budget=args.budget)
    if args.seed is not None:
        print("warning: --seed makes the noise predictable: a test round with no DP guarantee; "
              "its update is never uploaded", file=sys.stderr)
    r = client.train_round(args.labels, args.mode, args.epsilon, settings=settings, seed=args.seed)
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
        return 0
    where = ("kept on this device as its personal head (diagnoses say so)" if r.mode == "personal" else
             f"update {r.update_id} is never uploaded (a test round)" if r.seeded else
             f"queued as update {r.update_id}: `updates show {r.update_id} [--explain]` prints what it sends (the "
             f"noised head change and the public constants above, nothing about the photos, the patients or how "
             f"many there are); approve it with `updates approve {r.update_id}`, then `updates upload`")
    privacy = (f"{TEST_BUILD_TEXT} (--seed); the round was still charged to these patients' budgets" if r.seeded
               else f"this round {patient_guarantee(r.epsilon_round, r.delta)} per patient; the most-spent patient "
                    f"in these photos: {patient_guarantee(r.epsilon_spent, r.delta)} of a budget of "
                    f"ε = {epsilon_str(r.budget)} per patient")
    scope = scope_lines(r.model_privacy, epsilon=r.epsilon_spent, delta=r.delta, seeded=r.seeded,
                        model_version=r.base_version)
    print(f"trained on {r.photos} photos of {r.patients} patients, model version {r.base_version}: "
          f"{r.steps} steps, sigma={r.noise_multiplier:.3f}, q={r.sample_rate:g}, C={r.clipping_norm:g}, "
          f"divisor={r.batch_divisor:g} (public constants: the same for any number of patients)\n"
          f"privacy: {privacy}\n" + "".join(f"  {line}\n" for line in scope) +
          f"accuracy on these photos: {r.accuracy_before:.1%} -> {r.accuracy_after:.1%} "
          f"(stays on this device)\n{where}")
    return 0


def _budget(client, args) -> int:
    from edge_client.device_guarantee import SCOPE_TEXT, patient_guarantee, remaining_str, scope_lines
    from edge_client.privacy_figures import epsilon_str

    b = client.budget_status(args.labels)
    fixed = "fixed at the device's first round" if b.fixed else "the default until the device's first round"
    print(f"{b.patients} patients, {b.photos} photos: the most-spent patient has "
          f"{patient_guarantee(b.spent, b.delta)} in {b.rounds} rounds, of a budget of "
          f"ε = {epsilon_str(b.budget)} per patient ({fixed}); remaining {remaining_str(b.budget, b.spent)}")
    if b.legacy_rounds:
        print(f"  includes {b.legacy_rounds} rounds from before per-patient accounting, charged to every patient "
              f"with a photo in the set they trained on")
    model = client.installed_model()
    scope = (scope_lines(_privacy_block(model), epsilon=b.spent, delta=b.delta, model_version=model.version)
             if model else [SCOPE_TEXT, "no model is installed now: for a patient also in the training set of the "
                                        "model you install, that model's ε and δ add to these"])
    for line in scope:
        print(f"  {line}")
    shown = sorted(b.per_patient, key=lambda p: (-p.spent, p.rows))
    shown = shown if args.all else shown[:10]
    print(f"{'patient':<24}  {'spent epsilon':>13}  {'rounds':>6}  rows")
    for p in shown:
        rows = ",".join(map(str, p.rows[:8])) + (",..." if len(p.rows) > 8 else "")
        print(f"{p.patient[:24]:<24}  {epsilon_str(p.spent):>13}  {p.rounds:>6}  {rows}")
    if len(shown) < len(b.per_patient):
        print(f"... and {len(b.per_patient) - len(shown)} more patients (--all lists them)")
    return 0


def _updates(client, args) -> int:
    from edge_client.privacy_figures import epsilon_str
    from edge_client.updates import describe_payload

    cmd = args.updates_command
    if cmd == "list":
        print(f"{'id':>4}  {'status':<9}  {'created':<20}  {'base':>4}  {'epsilon':>7}  {'photos':>6}  message")
        for u in client.update_queue():
            print(f"{u.id:>4}  {u.status:<9}  {u.created:<20}  {u.base_version:>4}  {epsilon_str(u.epsilon):>7}  "
                  f"{u.photos:>6}  {u.message or ''}")
        return 0
    if cmd == "show":
        payload = client.update_payload(args.id)
        print("\n".join(describe_payload(payload)) if args.explain else json.dumps(payload, indent=1))
        return 0
    if cmd == "approve":
        client.approve_update(args.id)
        print(f"update {args.id} approved: it uploads with `updates upload`")
        return 0
    if cmd == "discard":
        client.discard_update(args.id)
        print(f"update {args.id} discarded")
        return 0
    from edge_client.updates import UpdateQueue

    queue = UpdateQueue(client.home)
    try:
        report = queue.upload(args.server, _read_token(args), ca_file=args.ca_file, insecure_http=args.insecure_http)
    finally:
        queue.close()
    for line in report.messages or ["nothing approved to upload"]:
        print(line)
    return 0 if not report.rejected and not report.waiting else 4


def _read_token(args) -> str:
    """The upload token from --token-file or $DOPAMINE_HUB_TOKEN (one line). Raises ValueError."""
    if args.token is not None:
        raise ValueError(f"--token is refused: a token on the command line is visible to every user (ps); "
                         f"use --token-file FILE or ${TOKEN_ENV}")
    if args.token_file is not None:
        try:
            text = args.token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{args.token_file}: cannot read the token file ({exc})") from None
        source = str(args.token_file)
    else:
        text, source = os.environ.get(TOKEN_ENV, ""), f"${TOKEN_ENV}"
    token = text.strip()
    if not token:
        raise ValueError(f"no upload token: pass --token-file FILE or set ${TOKEN_ENV}")
    if any(c.isspace() for c in token):
        raise ValueError(f"{source}: the token must be one line with no spaces")
    return token


def _sync(client, args) -> int:
    from edge_client.fetcher import Fetcher
    from edge_client.manifest import read_public_key
    from edge_client.sync import sync

    key = read_public_key(args.key) if args.key else None
    fetcher = Fetcher(args.server, ca_file=args.ca_file, insecure_http=args.insecure_http)
    result = sync(client.store, args.server, public_key=key, fetcher=fetcher,
                  progress=None if args.quiet else _print_progress)
    print(result.message)
    if result.notice:
        print(f"warning: {result.notice}", file=sys.stderr)
    if result.index_expires:
        print(f"model list valid until {result.index_expires}")
    return 0


def _diagnose(client, args) -> int:
    """Exit 0: graded; 3: photo refused (retake); 5: could not be graded after N attempts: refer."""
    try:
        d = client.diagnose(args.image, keep_photo=args.keep_photo, patient_id=args.patient, eye=args.eye,
                            operator=args.operator)
    except PhotoQualityError as exc:
        ungradable = isinstance(exc, UngradableReferral)
        if args.json:
            print(json.dumps({"refused": exc.reason, "hint": exc.hint, "measures": exc.measures,
                              "attempts": exc.attempts, "history_id": exc.history_id,
                              "decision": "ungradable" if ungradable else "refused", "refer": ungradable,
                              "last_reason": getattr(exc, "last_reason", None)}))
        else:
            print(f"REFER: {exc.hint}" if ungradable else f"refused: {exc.hint}", file=sys.stderr)
        return 5 if ungradable else 3
    if client.notice:
        print(f"warning: {client.notice}", file=sys.stderr)
    if args.json:
        print(json.dumps(d.to_dict(), indent=2, ensure_ascii=False))
        return 0
    probs = "  ".join(f"{p:.2f}" for p in d.probabilities)
    head = ("personal head (trained on this device's photos; the card's figures are the shared head's)"
            if d.personal_head else "shared head")
    who = ", ".join(x for x in (d.patient_id and f"patient {d.patient_id}", d.eye and f"{d.eye} eye",
                                d.operator and f"operator {d.operator}") if x) or "no patient id"
    print(f"{d.advice}\n"
          f"decision: {d.decision}; {d.reason}\n"
          f"grade {d.grade}: {d.grade_name} ({d.confidence:.0%}); probabilities: {probs}; {head}\n"
          f"{who}; {d.local_time}; {d.seconds * 1000:.0f} ms\n"
          "model card:\n" + "\n".join(f"  {line}" for line in d.card.lines()))
    return 0


def _print_progress(done: int, total: int) -> None:
    sys.stderr.write(f"\rdownloading {done * 100 // max(total, 1):3d}% ({done}/{total} bytes)")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _run(args) -> int:
    from edge_client.api import EdgeClient

    client = EdgeClient(getattr(args, "home", None))
    if args.command == "sync":
        return _sync(client, args)
    if args.command == "diagnose":
        return _diagnose(client, args)
    if args.command == "history":
        if args.csv:
            print(f"wrote {client.export_history_csv(args.csv)}")
            return 0
        print(f"{'id':>4}  {'local time':<25}  {'patient':<10}  {'eye':<5}  {'decision':<15}  {'P(ref)':>6}  "
              f"{'grade':<20}  {'model':<17}  image sha256")
        for e in client.history():
            grade = "-" if e.grade is None else f"{e.grade} {e.grade_name}"
            decision = e.decision if e.refusal is None else f"{e.decision}:{e.refusal}"
            p_ref = "-" if e.p_referable is None else f"{e.p_referable:.0%}"
            model = f"v{e.model_version} " + ("" if e.card is None else
                                              "validated" if e.card.validated else "NOT VALIDATED")
            print(f"{e.id:>4}  {e.local_time or e.time:<25}  {e.patient_id or '-':<10}  {e.eye or '-':<5}  "
                  f"{decision:<15}  {p_ref:>6}  {grade:<20}  {model:<17}  {e.image_sha256[:16]}")
        return 0
    if args.command == "train":
        return _train(client, args)
    if args.command == "updates":
        return _updates(client, args)
    if args.command == "budget":
        return _budget(client, args)
    if args.command == "rollback":
        print(f"now using model version {client.rollback()}")
        return 0
    model = client.installed_model()
    if client.notice:
        print(f"warning: {client.notice}", file=sys.stderr)
    listing = client.store.index_status()
    if model is None:
        print(f"no model installed: run sync\n{listing.message}")
        return 1
    print(json.dumps({**model.__dict__, "card": model.card and model.card.to_dict(),
                      "guarantee": guarantee_text(_privacy_block(model)), "model_list": listing.__dict__},
                     indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (EdgeError, ImageError, ManifestError, KeyError, ValueError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        for extra in getattr(exc, "problems", [])[1:]:
            print(f"error: {extra}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
