"""Run the real app headless through a first run and a clinic's day, and write what it showed as JSON.

Usage (one window size per process; the window is never resized): see parse(). The driver
starts `python -m hub serve` on loopback itself, behind a gate proxy (a link on which a model
download can be held half-way), so it can grade while an update downloads, then stop the hub
for the offline part and start it again for the training upload. It drives the app only
through touches and the back key (text fields are filled in as a keyboard would) and records
what the screens display; tests/mobile_app/test_app_ui.py asserts on the JSON.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import subprocess
import sys
import traceback
from pathlib import Path

from tests.mobile_app.kivy_harness import Driver, headless, size_violations  # (no kivy import yet)

ROOT = Path(__file__).resolve().parents[2]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    for name in ("--size", "--home", "--hub-root", "--dist-v2", "--builtin-key", "--key-qr", "--unusable", "--corrupt",
                 "--labels-zip", "--bad-labels", "--token", "--shots", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--photo", action="append", required=True)
    p.add_argument("--wrong-builtin-key", action="store_true",
                   help="the built-in key is another publisher's: the user scans the right one")
    p.add_argument("--deadline", type=float, default=240, help="dump stacks and exit after this many seconds")
    return p.parse_args()


def main() -> int:
    args = parse()
    faulthandler.dump_traceback_later(args.deadline, exit=True)   # a hang fails with a stack, not silence
    width, height = (int(v) for v in args.size.split("x"))
    headless(width, height)
    result: dict = {"size": [width, height], "steps": [], "violations": {}, "shots": {}}
    hubs, proxies = [], []
    try:
        from tests.helpers.bundles import HubProcess
        from tests.mobile_app.gate_proxy import GateProxy

        def start_hub():
            hubs.append(HubProcess(Path(args.hub_root)))
            return hubs[-1]

        hub = start_hub()
        host, port = hub.url.split("//")[1].split(":")
        proxies.append(GateProxy((host, int(port))))
        run(args, result, hub, proxies[0], width, height, start_hub)
        result["ok"] = True
    except BaseException as exc:  # the JSON says what broke; the test prints it
        result["ok"] = False
        result["error"] = "".join(traceback.format_exception(exc))
    finally:
        for proxy in proxies:
            proxy.close()
        for hub in hubs:
            hub.stop()
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0 if result["ok"] else 1


class Session:
    """The running app and the helpers every step uses."""

    def __init__(self, app, picker, result: dict, shots: Path, tag: str):
        from kivy.core.window import Window

        self.app, self.picker, self.result, self.shots, self.tag = app, picker, result, shots, tag
        self.d, self.window = Driver(), Window

    def nav(self, name: str):
        tab = next(t for t in self.app.nav.tabs() if t.screen == name)
        self.d.tap(tab)
        self.d.pump(2)
        return self.app.screen(name)

    def back(self) -> str:
        """Android's back button (key 27); returns the screen shown after it."""
        handled = self.window.dispatch("on_keyboard", 27, 41, None, [])
        self.d.pump(2)
        assert handled, "the back key was not handled"
        return self.app.current

    def check_sizes(self, name: str) -> None:
        self.d.pump(2)
        self.result["violations"][name] = size_violations(self.window)

    def shot(self, name: str) -> str:
        return self.d.screenshot(self.shots / f"{name}_{self.tag}.png")

    def wait_popup(self):
        from kivy.uix.modalview import ModalView

        def open_one():
            return next((c for c in self.window.children if isinstance(c, ModalView) and c._is_open), None)

        self.d.wait(lambda: open_one() is not None, "a confirmation")
        self.d.pump(3)
        return open_one()


def run(args, result: dict, hub, proxy, width: int, height: int, start_hub) -> None:
    from kivy.clock import Clock
    from kivy.core.window import Window

    from tests.mobile_app.fake_picker import FakePicker
    from mobile_app.app import DopamineApp
    from tests.mobile_app.ui_flows import files_in, language_tour, read_home, read_result, rows_text, train_session

    home_dir = Path(args.home)
    picker = FakePicker(home_dir / "picker-cache")
    # A fresh install: no settings file, the publisher key built into the app by the build step.
    app = DopamineApp(home=home_dir, picker=picker, probe_interval=0.3, bundled_key=args.builtin_key)
    root = app.build()
    app.root = root
    Window.add_widget(root)
    app.dispatch("on_start")
    s = Session(app, picker, result, Path(args.shots), f"{width}x{height}")
    d = s.d
    d.pump(3)
    step = result["steps"].append
    result["window"] = list(Window.size)
    result["fresh"] = {"settings_file": (home_dir / "app_settings.json").exists(), "home": read_home(app.screen("home")),
                       "nav": [t.screen for t in app.nav.tabs()]}

    # -- Settings: the built-in key's fingerprint; type the server address ---------------------
    settings = s.nav("settings")
    result["key_fresh"] = {"fingerprint": app.key_fingerprint, "source": app.key_source,
                           "shown": settings.ids.key_fingerprint.text, "source_text": settings.ids.key_source.text}
    settings.ids.server.text = "ftp://nowhere"
    d.tap(settings.ids.save_button)
    result["bad_url_status"] = settings.status
    settings.ids.server.text = proxy.url
    d.tap(settings.ids.save_button)
    result["settings_status"] = settings.status
    step("server saved")

    home = s.nav("home")
    d.wait(lambda: app.online, "the online badge")
    result["home_online_no_model"] = read_home(home)
    if args.wrong_builtin_key:        # the app was built with another publisher's key
        d.tap(home.ids.check_button)
        d.wait(lambda: not home.syncing, "the refused sync", timeout=60)
        result["wrong_key_sync"] = read_home(home)
        settings = s.nav("settings")
        settings.ids.key_input.text = "not a key at all"
        d.tap(settings.ids.paste_button)
        result["pasted_garbage"] = settings.key_status
        picker.push(args.key_qr)                     # the supervisor's QR code, photographed
        d.tap(settings.ids.scan_button)
        popup = s.wait_popup()
        result["scan_confirm"] = popup.message
        d.tap(popup.ids.confirm_button)
        d.wait(lambda: app.key_source == "entered", "the scanned key")
        result["key_scanned"] = {"fingerprint": app.key_fingerprint, "status": settings.key_status,
                                 "shown": settings.ids.key_fingerprint.text}
        home = s.nav("home")
        step("key scanned")

    # -- First sync: installs version 1 and pins the key ---------------------------------------
    d.tap(home.ids.check_button)
    d.wait(lambda: not home.syncing, "the first sync", timeout=120)
    result["home_v1"] = read_home(home)
    assert app.model is not None, f"the first sync failed: {result['home_v1']}"
    result["key_after_sync"] = {"source": app.key_source, "fingerprint": app.key_fingerprint,
                                "pinned": app.actions.pinned_key() is not None}
    step("synced v1")

    # -- Version 2 is published; the banner says so; its download is held half-way -----------
    r = subprocess.run([sys.executable, "-m", "hub", "publish", args.dist_v2, "--root", args.hub_root], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d.wait(lambda: app.offered == 2, "the update-available banner", timeout=30)
    d.pump(2)
    result["home_update_available"] = read_home(home)
    proxy.hold()
    d.tap(home.ids.check_button)
    d.wait(lambda: proxy.holding.is_set() and home.progress > 0, "the download to be under way", timeout=60)
    result["home_downloading"] = read_home(home) | {"during": home.ids.during_sync.text}

    diag = s.nav("diagnose")
    diag.ids.patient.text = "P-0042"
    d.tap(diag.ids.eye_left)
    diag.ids.operator.text = "Amina"
    picker.push(args.photo[0])
    d.tap(diag.ids.pick_button)
    d.wait(lambda: diag.photo_ready, "the picked photo")
    frames0 = Clock.frames_displayed
    d.tap(diag.ids.grade_button)
    result["grading_after_press"] = diag.grading
    result["status_while_grading"] = diag.status
    d.wait(lambda: not diag.grading, "grading during the download", timeout=60)
    result["frames_while_grading"] = Clock.frames_displayed - frames0
    result["during_download"] = read_result(diag) | {"still_syncing": home.syncing, "held": proxy.holding.is_set()}
    proxy.release()
    d.wait(lambda: not home.syncing, "the second download", timeout=120)
    result["home_v2"] = read_home(home)
    assert app.model is not None and app.model.version == 2, f"the second sync failed: {result['home_v2']}"
    step("graded during the download")

    picker.push(args.photo[1])
    d.tap(diag.ids.pick_button)
    d.wait(lambda: diag.photo_ready, "the second photo")
    d.tap(diag.ids.grade_button)
    d.wait(lambda: not diag.grading, "grading on version 2", timeout=60)
    result["diagnosis_v2"] = read_result(diag)
    result["shots"]["diagnose"] = s.shot("diagnose")
    s.check_sizes("diagnose")
    # a dark photo of the same eye three times (issue 14's client then advises referral), then a corrupt file
    for key, path in (("unusable", args.unusable), ("unusable_2", args.unusable), ("ungradable", args.unusable),
                      ("corrupt", args.corrupt)):
        picker.push(path)
        d.tap(diag.ids.pick_button)
        d.wait(lambda: diag.photo_ready, f"the {key} photo (picker calls {picker.calls}, photo {diag.photo})")
        d.tap(diag.ids.grade_button)
        d.wait(lambda: not diag.grading, f"grading the {key} photo", timeout=60)
        result[key] = read_result(diag)
    s.check_sizes("diagnose_unusable")
    result["shots"]["diagnose_ungradable"] = s.shot("diagnose_ungradable")
    result["cache_after_grading"] = {"copies_made": len(picker.copies), "left": [p.name for p in picker.cached()]}
    step("graded v2")

    # -- Offline: the hub and the link go away; grading goes on -------------------------------
    home = s.nav("home")
    result["shots"]["home"] = s.shot("home")
    s.check_sizes("home")
    proxy.close()
    hub.stop()
    d.wait(lambda: not app.online, "the offline badge", timeout=30)
    d.pump(2)
    result["home_offline"] = read_home(home)
    diag = s.nav("diagnose")
    picker.push(args.photo[1])
    d.tap(diag.ids.pick_button)
    d.wait(lambda: diag.photo_ready, "the offline photo")
    d.tap(diag.ids.grade_button)
    d.wait(lambda: not diag.grading, "offline grading", timeout=60)
    result["offline_diagnosis"] = read_result(diag)
    step("offline")

    # -- Back button: screens, then a dialog ----------------------------------------------------
    s.nav("history")
    result["back"] = [s.back(), s.back()]           # history -> diagnose -> home

    # -- History: newest first; delete is confirmed; export goes to the share sheet ------------
    hist = s.nav("history")
    d.wait(lambda: len(hist.entries) >= 3, "history rows")
    result["history"] = [{"id": e.id, "time": e.time, "grade": e.grade, "version": e.model_version}
                         for e in hist.entries]
    result["history_rows"] = [rows_text(row) for row in reversed(hist.ids.rows.children)]
    result["shots"]["history"] = s.shot("history")
    s.check_sizes("history")
    newest = list(reversed(hist.ids.rows.children))[0].children[0]
    n = len(hist.entries)
    d.tap(newest)
    popup = s.wait_popup()
    result["delete_confirm"] = {"message": popup.message, "confirm": popup.ids.confirm_button.text}
    result["back_in_dialog"] = s.back()              # back closes the dialog, nothing deleted
    d.pump(3)
    result["after_back_dialog"] = len(hist.entries)
    d.tap(newest)
    popup = s.wait_popup()
    d.tap(popup.ids.cancel_button)
    d.pump(3)
    result["after_cancel"] = len(hist.entries)
    d.tap(newest)
    popup = s.wait_popup()
    d.tap(popup.ids.confirm_button)
    d.pump(5)
    d.wait(lambda: len(hist.entries) == n - 1, f"the deleted row ({popup.message!r}, open {popup._is_open}, "
                                               f"{[type(c).__name__ for c in Window.children]})")
    result["history_after_delete"] = [e.id for e in hist.entries]
    d.tap(hist.ids.export_button)
    d.wait(lambda: picker.shared and hist.status != app.tr("history.exporting"), "the share sheet")
    result["export"] = {"status": hist.status, "shared": picker.shared}
    step("history")

    # -- Settings: the pinned key; enable training (Train tab and token appear) -----------------
    settings = s.nav("settings")
    result["key_pinned_view"] = {"source_text": settings.ids.key_source.text,
                                 "paste_disabled": settings.ids.paste_button.disabled}
    result["shots"]["settings"] = s.shot("settings")
    s.check_sizes("settings")
    d.tap(settings.ids.training)
    d.pump(2)
    settings.ids.token.text = args.token
    d.tap(settings.ids.save_button)
    result["nav_with_training"] = [t.screen for t in app.nav.tabs()]
    result["nav_fit"] = [(t.text, round(t.width), round(t.ids.label.texture_size[0])) for t in app.nav.tabs()]
    result["token_saved"] = app.settings.device_token == args.token
    train_session(s, args, start_hub)
    step("training")

    for lang in ("fr", "sw", "en"):
        language_tour(s, lang)
        result["nav_fit_" + lang] = [(t.text, round(t.width), round(t.ids.label.texture_size[0]))
                                     for t in app.nav.tabs()]
    result["state_files"] = files_in(home_dir)
    step("languages")


if __name__ == "__main__":
    sys.exit(main())
