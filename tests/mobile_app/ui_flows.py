"""Parts of the headless session (tests/mobile_app/ui_driver.py): the Train screen end to end, the
tour of every screen in each language, and readers that turn what a screen shows into JSON."""
from __future__ import annotations

from pathlib import Path

LANGUAGES = {"en": "English", "fr": "Français", "sw": "Kiswahili"}
SCREENS = ("home", "diagnose", "history", "train", "settings")


def train_session(s, args, start_hub) -> None:
    """Labels (a bad file, then a zip as a phone's document picker hands it over), the budget, a
    federated round, approve, upload offline then online, a personal round used by Diagnose, and
    going back to the shared head (confirmed)."""
    from kivy.clock import Clock

    d, app, picker, result = s.d, s.app, s.picker, s.result
    train = s.nav("train")
    result["train_initial"] = {"labels": train.ids.labels_text.text, "queue": train.ids.queue_empty.text,
                               "train_disabled": train.ids.train_button.disabled}
    picker.push(args.bad_labels)            # a file with mistakes: every bad row is listed, nothing trains
    d.tap(train.ids.pick_button)
    d.wait(lambda: train.labels is not None, "the bad labels to be read")
    result["train_bad_labels"] = {"problems": train.ids.problems_text.text, "photos": train.ids.photos_text.text,
                                  "train_disabled": train.ids.train_button.disabled}
    s.check_sizes("train_bad_labels")
    picker.push(args.labels_zip)
    d.tap(train.ids.pick_button)
    d.wait(lambda: train.labels is not None and train.labels.status == "ok", "the labels to be read")
    result["train_labels"] = {"labels": train.ids.labels_text.text, "photos": train.ids.photos_text.text,
                              "budget": train.ids.budget_text.text, "problems": train.ids.problems_text.text,
                              "csv": train.labels_csv}
    s.check_sizes("train_labels")

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
                           "epsilon_round": r.epsilon_round, "epsilon_spent": r.epsilon_spent, "delta": r.delta,
                           "steps": r.steps, "base_version": r.base_version,
                           "result_text": train.ids.result_text.text, "budget": train.ids.budget_text.text,
                           "queue": queue_rows(train)}
    s.check_sizes("train_queue")

    row = train.ids.queue.children[-1]
    d.tap(row.ids.approve)
    d.wait(lambda: train.has_approved, "the approved update")
    result["queue_approved"] = queue_rows(train)
    d.tap(train.ids.upload_button)          # the hub is down (the device went offline): it waits
    d.wait(lambda: not train.uploading and train.upload_text != app.tr("train.uploading"), "the offline upload",
           timeout=60)
    d.wait(lambda: train.has_approved, "the queue after the offline upload")
    result["upload_offline"] = {"text": train.ids.upload_text.text, "queue": queue_rows(train)}

    hub = start_hub()                       # back online, on a new address typed in Settings
    result["hub_url_2"] = hub.url
    settings = s.nav("settings")
    settings.ids.server.text = hub.url
    d.tap(settings.ids.save_button)
    result["settings_status_2"] = settings.status
    train = s.nav("train")
    d.wait(lambda: train.has_approved, "the queue")
    d.tap(train.ids.upload_button)
    d.wait(lambda: not train.uploading and train.upload_text != app.tr("train.uploading"), "the upload", timeout=60)
    d.wait(lambda: not train.has_approved, "the uploaded queue")
    result["upload_online"] = {"text": train.ids.upload_text.text, "queue": queue_rows(train),
                               "upload_disabled": train.ids.upload_button.disabled}

    d.tap(train.ids.personal_button)
    train.ids.epsilon.text = "1"
    d.tap(train.ids.train_button)
    d.wait(lambda: not train.training, "the personal round", timeout=180)
    d.wait(lambda: train.labels is not None and train.labels.rounds == 2, "the budget after the personal round")
    result["personal"] = {"status": train.outcome.status, "mode": train.outcome.result.mode,
                          "update_id": train.outcome.result.update_id, "result_text": train.ids.result_text.text,
                          "personal_text": train.ids.personal_text.text, "app_personal": app.personal_head,
                          "budget": train.ids.budget_text.text, "queue_len": len(train.queue)}
    result["shots"]["train"] = s.shot("train")
    s.check_sizes("train_personal")
    diag = s.nav("diagnose")
    picker.push(args.photo[0])
    d.tap(diag.ids.pick_button)
    d.wait(lambda: diag.photo_ready, "the photo")
    d.tap(diag.ids.grade_button)
    d.wait(lambda: not diag.grading, "grading with the personal head", timeout=120)
    result["personal_diagnosis"] = read_result(diag)
    result["home_personal"] = s.nav("home").ids.model_text.text
    train = s.nav("train")
    d.tap(train.ids.stop_personal_button)   # destructive: a confirmation first
    popup = s.wait_popup()
    result["personal_stop_confirm"] = popup.message
    d.tap(popup.ids.confirm_button)
    d.pump(2)
    result["personal_stopped"] = {"app_personal": app.personal_head, "result_text": train.ids.result_text.text}


def language_tour(s, lang: str) -> None:
    """Switch the language in Settings (touching the drop-down), then visit every screen: its
    texts, sizes and a screenshot in that language."""
    d = s.d
    settings = s.nav("settings")
    d.tap(settings.ids.language)                      # opens the drop-down
    d.pump(2)
    dropdown = settings.ids.language._dropdown
    options = dropdown.container.children
    d.tap(next(o for o in options if o.text == LANGUAGES[lang]))
    d.wait(lambda: dropdown.parent is None, "the language list to close", timeout=5)
    d.tap(settings.ids.save_button)
    tour = s.result.setdefault("languages", {})[lang] = {"status": settings.status, "app_lang": s.app.lang,
                                                       "nav": [t.text for t in s.app.nav.tabs()]}
    for name in SCREENS:
        screen = s.nav(name)
        d.pump(2)
        if name == "diagnose":
            tour["diagnosis"] = read_result(screen)
        if name == "train":
            tour["train"] = {"budget": screen.ids.budget_text.text, "mode": screen.ids.mode_text.text,
                             "queue": queue_rows(screen)}
        if name == "home":
            tour["banners"] = [b.text for b in reversed(screen.ids.banners.children)]
        if name == "settings":
            tour["key_source"] = screen.ids.key_source.text
        s.check_sizes(f"{name}_{lang}")
        s.result["shots"][f"{name}_{lang}"] = s.shot(f"{name}_{lang}")


def queue_rows(train) -> list[dict]:
    return [{"id": row.update_id, "text": row.ids.text.text, "approve": not row.ids.approve.disabled,
             "discard": not row.ids.discard.disabled} for row in reversed(train.ids.queue.children)]


def rows_text(row) -> str:
    return " | ".join(getattr(c, "text", "") for c in reversed(row.children))


def read_result(screen) -> dict:
    """What the Diagnose screen shows, as text and numbers, and the client's diagnosis behind it."""
    w = screen.result_widgets
    out = {"status": screen.outcome.status if screen.outcome else None,
           "refer": bool(screen.outcome.refer) if screen.outcome else None,
           "texts": {k: v.text for k, v in w.items() if k != "bars"},
           "levels": {k: getattr(v, "level", None) for k, v in w.items() if k != "bars"},
           "warn": [k for k, v in w.items() if k != "bars" and tuple(v.color[:3]) == (0.6, 0.33, 0.0)]}
    if "bars" in w:
        out["bars"] = [{"label": b.label, "value": b.value, "percent": b.percent,
                        "shown": b.children[0].text} for b in w["bars"]]
    if screen.outcome is not None and screen.outcome.diagnosis is not None:
        dg = screen.outcome.diagnosis
        out["model"] = {"grade": dg.grade, "probabilities": dg.probabilities, "refer": dg.refer,
                        "personal_head": dg.personal_head, "version": dg.model_version,
                        "decision": getattr(dg, "decision", None), "history_id": dg.history_id}
    return out


def read_home(home) -> dict:
    return {"banners": [{"text": b.text, "level": b.level} for b in reversed(home.ids.banners.children)],
            "model": home.ids.model_text.text, "privacy": home.ids.privacy_text.text,
            "status": home.ids.status.text, "online": home.ids.online.text, "server": home.ids.server.text,
            "progress": home.progress, "syncing": home.syncing, "details": home.ids.details.text}


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
