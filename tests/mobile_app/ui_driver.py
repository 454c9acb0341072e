"""Run the real app headless through a whole screening session and write what it showed as JSON.

Usage (one window size per process; the window is never resized):
    python tests/mobile_app/ui_driver.py --size 360x640 --home H --hub-root HUB --public-key PUB \
        --photo A.png --photo B.png --unusable DARK.png --corrupt BAD.png --labels LABELS.csv \
        --bad-labels BAD.csv --token TOKEN --shots DIR --out RESULT.json

It starts `python -m hub serve` on loopback itself (so it can stop it mid-run for the offline
part, and start it again for the training upload), drives the app only through touches (text
fields are filled in as a keyboard would), and records what the screens display;
tests/mobile_app/test_app_ui.py asserts on the JSON.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from kivy_harness import Driver, headless, size_violations  # noqa: E402  (no kivy import yet)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--size", required=True)
    p.add_argument("--home", required=True)
    p.add_argument("--hub-root", required=True)
    p.add_argument("--public-key", required=True)
    p.add_argument("--photo", action="append", required=True)
    p.add_argument("--unusable", required=True)
    p.add_argument("--corrupt", required=True)
    p.add_argument("--labels", required=True, help="a specialist's labels CSV (image,grade) for the Train screen")
    p.add_argument("--bad-labels", required=True, help="a labels CSV with bad rows")
    p.add_argument("--token", required=True, help="a device token the hub issued")
    p.add_argument("--shots", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--deadline", type=float, default=240, help="dump stacks and exit after this many seconds")
    return p.parse_args()


def main() -> int:
    args = parse()
    faulthandler.dump_traceback_later(args.deadline, exit=True)   # a hang fails with a stack, not silence
    width, height = (int(v) for v in args.size.split("x"))
    headless(width, height)
    result: dict = {"size": [width, height], "steps": [], "violations": {}, "shots": {}}
    hubs: list = []
    try:
        from fixtures_bundle import HubProcess

        def start_hub():
            hubs.append(HubProcess(Path(args.hub_root)))
            return hubs[-1]

        hub = start_hub()
        result["hub_url"] = hub.url
        run(args, result, hub, width, height, start_hub)
        result["ok"] = True
    except BaseException as exc:  # the JSON says what broke; the test prints it
        result["ok"] = False
        result["error"] = "".join(traceback.format_exception(exc))
    finally:
        for hub in hubs:
            hub.stop()
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0 if result["ok"] else 1


def run(args, result: dict, hub, width: int, height: int, start_hub) -> None:
    from kivy.clock import Clock
    from kivy.core.window import Window

    from fake_picker import FakePicker
    from mobile_app.app import DopamineApp
    from mobile_app.settings_store import Settings, SettingsStore

    home = Path(args.home)
    tag = f"{width}x{height}"
    shots = Path(args.shots)
    # Provisioning at install: the publisher's key ships with the app (here: its settings file).
    SettingsStore(home / "app_settings.json").save(
        Settings(public_key=Path(args.public_key).read_text().strip()))

    picker = FakePicker()
    app = DopamineApp(home=home, picker=picker, probe_interval=0.3)
    root = app.build()
    app.root = root
    Window.add_widget(root)
    app.dispatch("on_start")
    d = Driver()
    d.pump(3)
    result["window"] = list(Window.size)
    result["nav_initial"] = [b.screen for b in reversed(root.ids.nav.children)]
    step = result["steps"].append

    def check_sizes(name: str) -> None:
        d.pump(2)
        result["violations"][name] = size_violations(Window)

    def nav(name: str):
        button = next(b for b in root.ids.nav.children if b.screen == name)
        d.tap(button)
        d.pump(2)
        return app.screen(name)

    # -- Settings: type the server address, save -------------------------------------------
    settings = nav("settings")
    result["shots"]["settings"] = d.screenshot(shots / f"settings_{tag}.png")
    check_sizes("settings")
    settings.ids.server.text = "ftp://nowhere"
    d.tap(settings.ids.save_button)
    result["bad_url_status"] = settings.status
    settings.ids.server.text = hub.url
    d.tap(settings.ids.save_button)
    result["settings_status"] = settings.status
    step("settings saved")

    # -- Home: online, check for update ----------------------------------------------------
    home_screen = nav("home")
    d.wait(lambda: app.online, "the online badge")
    result["home_before"] = {"model": home_screen.ids.model_text.text, "online": home_screen.ids.online.text}
    d.tap(home_screen.ids.check_button)
    result["sync_started"] = home_screen.syncing
    d.wait(lambda: not home_screen.syncing, "sync to finish", timeout=120)
    result["home_after"] = {"model": home_screen.ids.model_text.text, "privacy": home_screen.ids.privacy_text.text,
                            "status": home_screen.ids.status.text, "online": home_screen.ids.online.text,
                            "server": home_screen.ids.server.text, "progress": home_screen.progress}
    result["shots"]["home"] = d.screenshot(shots / f"home_{tag}.png")
    check_sizes("home")
    step("synced")

    # -- Diagnose: pick, grade (UI keeps drawing), read the result --------------------------
    diag = nav("diagnose")
    picker.push(args.photo[0])
    d.tap(diag.ids.pick_button)
    d.wait(lambda: diag.photo, "the picked photo")
    frames0 = Clock.frames_displayed
    t0 = time.monotonic()
    d.tap(diag.ids.grade_button)
    result["grade_press_seconds"] = time.monotonic() - t0
    result["grading_after_press"] = diag.grading
    result["status_while_grading"] = diag.status
    d.wait(lambda: not diag.grading, "grading", timeout=120)
    result["frames_while_grading"] = Clock.frames_displayed - frames0
    result["diagnosis"] = read_result(diag)
    result["shots"]["diagnose"] = d.screenshot(shots / f"diagnose_{tag}.png")
    check_sizes("diagnose")
    step("graded")

    for key, path in (("unusable", args.unusable), ("corrupt", args.corrupt)):
        picker.push(path)
        d.tap(diag.ids.pick_button)
        d.wait(lambda p=path: diag.photo == str(p), f"the {key} photo")
        d.tap(diag.ids.grade_button)
        d.wait(lambda: not diag.grading, f"grading the {key} photo", timeout=120)
        result[key] = read_result(diag)
        if key == "unusable":
            check_sizes("diagnose_unusable")
    step("bad photos")

    # -- Offline: stop the hub, grade again ------------------------------------------------
    hub.stop()
    d.wait(lambda: not app.online, "the offline badge", timeout=30)
    picker.push(args.photo[-1])
    d.tap(diag.ids.pick_button)
    d.wait(lambda: diag.photo == str(args.photo[-1]), "the second photo")
    d.tap(diag.ids.grade_button)
    d.wait(lambda: not diag.grading, "offline grading", timeout=120)
    result["offline_diagnosis"] = read_result(diag)
    result["offline_home"] = nav("home").ids.online.text
    step("offline")

    # -- History: newest first, delete one, export -----------------------------------------
    hist = nav("history")
    d.wait(lambda: len(hist.ids.rows.children) >= 2, "history rows")
    result["history"] = [{"id": e.id, "time": e.time, "grade": e.grade} for e in hist.entries]
    result["history_rows"] = [rows_text(r) for r in reversed(hist.ids.rows.children)]
    result["shots"]["history"] = d.screenshot(shots / f"history_{tag}.png")
    check_sizes("history")
    first_delete = list(reversed(hist.ids.rows.children))[0].children[0]
    n = len(hist.entries)
    d.tap(first_delete)
    d.wait(lambda: len(hist.entries) == n - 1, "the deleted row")
    result["history_after_delete"] = [e.id for e in hist.entries]
    d.tap(hist.ids.export_button)
    d.wait(lambda: hist.status, "the export message")
    result["export_status"] = hist.status
    step("history")

    # -- Settings: enable training (Train tab and the token field appear), type the token -----
    settings = nav("settings")
    d.tap(settings.ids.training)
    d.pump(2)
    settings.ids.token.text = args.token
    d.tap(settings.ids.save_button)
    result["nav_with_training"] = [b.screen for b in reversed(root.ids.nav.children)]
    result["token_saved"] = app.settings.device_token == args.token
    step("training enabled")
    train_session(d, app, picker, args, result, nav, check_sizes, start_hub, shots, tag)

    settings = nav("settings")
    d.tap(settings.ids.language)                      # opens the drop-down
    d.pump(2)
    options = settings.ids.language._dropdown.container.children
    result["language_options"] = [o.text for o in options]
    d.tap(next(o for o in options if o.text == "Français"))
    result["language_chosen"] = settings.ids.language.text
    dropdown = settings.ids.language._dropdown   # closes after min_state_time, like for a person
    d.wait(lambda: dropdown.parent is None, "the language list to close", timeout=5)
    d.tap(settings.ids.save_button)
    result["language_status"] = settings.status
    result["lang"] = app.lang
    result["nav_fr"] = [b.text for b in reversed(root.ids.nav.children)]
    diag = nav("diagnose")
    result["diagnosis_fr"] = read_result(diag)
    check_sizes("diagnose_fr")
    check_sizes("settings_fr")
    train = nav("train")
    d.pump(2)
    result["train_fr"] = {"budget": train.ids.budget_text.text, "mode": train.ids.mode_text.text,
                          "queue": queue_rows(train)}
    check_sizes("train_fr")
    step("settings")


def train_session(d, app, picker, args, result: dict, nav, check_sizes, start_hub, shots: Path, tag: str) -> None:
    """The Train screen end to end: labels, budget, a federated round, approve, upload offline then
    online, a personal round used by Diagnose, and going back to the shared head."""
    from kivy.clock import Clock

    step = result["steps"].append
    train = nav("train")
    result["train_initial"] = {"labels": train.ids.labels_text.text, "queue": train.ids.queue_empty.text,
                               "train_disabled": train.ids.train_button.disabled}
    picker.push(args.bad_labels)            # a file with mistakes: every bad row is listed, nothing trains
    d.tap(train.ids.pick_button)
    d.wait(lambda: train.labels is not None, "the bad labels to be read")
    result["train_bad_labels"] = {"problems": train.ids.problems_text.text, "photos": train.ids.photos_text.text,
                                  "train_disabled": train.ids.train_button.disabled}
    check_sizes("train_bad_labels")
    picker.push(args.labels)
    d.tap(train.ids.pick_button)
    d.wait(lambda: train.labels is not None and train.labels.status == "ok", "the labels to be read")
    result["train_labels"] = {"labels": train.ids.labels_text.text, "photos": train.ids.photos_text.text,
                              "budget": train.ids.budget_text.text, "problems": train.ids.problems_text.text}
    check_sizes("train_labels")

    # federated round: the bar moves through both stages while frames keep being drawn
    stages: list[str] = []
    train.bind(progress_text=lambda _w, text: stages.append(text))
    d.tap(train.ids.federated_button)
    frames0 = Clock.frames_displayed
    d.tap(train.ids.train_button)
    result["training_after_press"] = train.training
    result["train_button_disabled_while_training"] = train.ids.train_button.disabled
    d.wait(lambda: not train.training, "the federated round", timeout=180)
    result["frames_while_training"] = Clock.frames_displayed - frames0
    result["train_stages"] = stages
    d.wait(lambda: train.labels is not None and train.labels.rounds == 1 and train.queue, "budget and queue")
    r = train.outcome.result
    result["federated"] = {"status": train.outcome.status, "mode": r.mode, "update_id": r.update_id,
                           "epsilon_round": r.epsilon_round, "steps": r.steps, "base_version": r.base_version,
                           "result_text": train.ids.result_text.text, "budget": train.ids.budget_text.text,
                           "queue": queue_rows(train)}
    scroll = train.ids.scroll      # the result and the queue in view (scroll_to misplaces content that fits)
    if scroll.children[0].height > scroll.height:
        scroll.scroll_to(train.ids.upload_button, animate=False)
    d.pump(2)
    result["shots"]["train"] = d.screenshot(shots / f"train_{tag}.png")
    check_sizes("train_queue")

    # approve, then upload while the hub is down (stopped for the offline part): it waits
    row = train.ids.queue.children[-1]
    d.tap(row.ids.approve)
    d.wait(lambda: train.has_approved, "the approved update")
    result["queue_approved"] = queue_rows(train)
    d.tap(train.ids.upload_button)
    d.wait(lambda: not train.uploading and train.upload_text != app.tr("train.uploading"), "the offline upload",
           timeout=60)
    d.wait(lambda: train.has_approved, "the queue after the offline upload")
    result["upload_offline"] = {"text": train.ids.upload_text.text, "queue": queue_rows(train)}

    # the hub is back (on a new port): type its address in Settings, upload again
    hub = start_hub()
    result["hub_url_2"] = hub.url
    settings = nav("settings")
    settings.ids.server.text = hub.url
    d.tap(settings.ids.save_button)
    result["settings_status_2"] = settings.status
    train = nav("train")
    d.wait(lambda: train.has_approved, "the queue")
    d.tap(train.ids.upload_button)
    d.wait(lambda: not train.uploading and train.upload_text != app.tr("train.uploading"), "the upload", timeout=60)
    d.wait(lambda: not train.has_approved, "the uploaded queue")
    result["upload_online"] = {"text": train.ids.upload_text.text, "queue": queue_rows(train),
                               "upload_disabled": train.ids.upload_button.disabled}
    step("federated round uploaded")

    # personal round: used by Diagnose, labelled as such; then back to the shared head
    d.tap(train.ids.personal_button)
    train.ids.epsilon.text = "1"
    d.tap(train.ids.train_button)
    d.wait(lambda: not train.training, "the personal round", timeout=180)
    d.wait(lambda: train.labels is not None and train.labels.rounds == 2, "the budget after the personal round")
    result["personal"] = {"status": train.outcome.status, "mode": train.outcome.result.mode,
                          "update_id": train.outcome.result.update_id, "result_text": train.ids.result_text.text,
                          "personal_text": train.ids.personal_text.text, "app_personal": app.personal_head,
                          "budget": train.ids.budget_text.text, "queue_len": len(train.queue)}
    result["shots"]["train_personal"] = d.screenshot(shots / f"train_personal_{tag}.png")
    check_sizes("train_personal")
    diag = nav("diagnose")
    picker.push(args.photo[0])
    d.tap(diag.ids.pick_button)
    d.wait(lambda: diag.photo == str(args.photo[0]), "the photo")
    d.tap(diag.ids.grade_button)
    d.wait(lambda: not diag.grading, "grading with the personal head", timeout=120)
    result["personal_diagnosis"] = read_result(diag)
    result["home_personal"] = nav("home").ids.model_text.text
    train = nav("train")
    d.tap(train.ids.stop_personal_button)
    d.pump(2)
    result["personal_stopped"] = {"app_personal": app.personal_head, "result_text": train.ids.result_text.text}
    step("personal round")


def queue_rows(train) -> list[dict]:
    return [{"id": row.update_id, "text": row.ids.text.text, "approve": not row.ids.approve.disabled,
             "discard": not row.ids.discard.disabled} for row in reversed(train.ids.queue.children)]


def rows_text(row) -> str:
    return " | ".join(getattr(c, "text", "") for c in reversed(row.children))


def read_result(screen) -> dict:
    """What the Diagnose screen shows, as text and numbers."""
    w = screen.result_widgets
    out = {"status": screen.outcome.status if screen.outcome else None,
           "texts": {k: v.text for k, v in w.items() if k != "bars"}}
    if "bars" in w:
        out["bars"] = [{"label": b.label, "value": b.value, "percent": b.percent,
                        "shown": b.children[0].text} for b in w["bars"]]
    if screen.outcome is not None and screen.outcome.diagnosis is not None:
        dg = screen.outcome.diagnosis
        out["model"] = {"grade": dg.grade, "probabilities": dg.probabilities, "refer": dg.refer,
                        "personal_head": dg.personal_head}
    return out


if __name__ == "__main__":
    sys.exit(main())
