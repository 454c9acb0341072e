"""What the screens say: sync failures in the user's words, Home's banners, and the result's
decision and model card (pure functions, no window)."""
from types import SimpleNamespace

import pytest

from edge_client import errors
from mobile_app.home_state import home_banners
from mobile_app.i18n import languages, table
from mobile_app.result_view import card_lines, view
from mobile_app.user_errors import SYNC_ERROR_KEYS, sync_error_key



@pytest.mark.parametrize("exc,key", [
    (errors.NetworkError("cannot reach the hub at http://x (refused)"), "error.network"),
    (errors.NetworkError("the hub at http://x has no model published yet"), "error.hub_empty"),
    (errors.TrustError("signature does not verify"), "error.not_signed"),
    (errors.DowngradeError("older"), "error.downgrade"),
    (errors.IntegrityError("sha256"), "error.integrity"),
    (errors.DiskFullError("full"), "error.disk_full"),
    (errors.NoCompatibleArtifact("none"), "error.no_artifact"),
    (PermissionError("read-only"), "error.storage"),
    (RuntimeError("?"), "error.unexpected"),
    (type("IndexExpiredError", (errors.SyncError,), {})("expired"), "error.index_stale"),
    (type("WithdrawnVersionError", (errors.SyncError,), {})("withdrawn"), "error.withdrawn"),
])
def test_every_sync_failure_has_words_in_every_language(exc, key):
    assert sync_error_key(exc) == key
    for lang in languages():
        text = table(lang)[key]
        assert text and "--key" not in text and "PUB" not in text     # no CLI advice on a phone


def test_all_error_keys_are_translated():
    for lang in languages():
        assert set(SYNC_ERROR_KEYS) <= set(table(lang))


def banners(**kw):
    base = dict(installed=None, server_set=True, online=True, offered=None, index_stale=False)
    return [(b.key, b.level) for b in home_banners(**{**base, **kw})]


def test_banners_tell_the_truth():
    assert banners(server_set=False, online=False) == [("banner.no_model_no_server", "error")]
    assert banners(online=False) == [("banner.no_model_offline", "error")]     # no "grading works" without a model
    assert banners() == [("banner.no_model_online", "warn")]
    assert banners(installed=3, online=False) == [("banner.offline_with_model", "ok")]
    assert banners(installed=3, offered=4) == [("banner.update_available", "info")]
    assert banners(installed=3, offered=3) == [("banner.online_current", "ok")]
    assert banners(installed=3, offered=2) == [("banner.online_current", "ok")]   # never "update" to an older one
    assert banners(installed=3, offered=3, index_stale=True)[-1] == ("banner.index_stale", "warn")


def diagnosis(**extra):
    return SimpleNamespace(grade=0, refer=False, model_version=4, probabilities=[0.61, 0, 0.13, 0.13, 0.13], **extra)


def test_a_result_without_a_decision_field_falls_back_to_refer_and_claims_no_validation():
    v = view(diagnosis(), created="2026-11-30T10:00:00Z", privacy={"epsilon": 7.5, "delta": 1e-5, "accountant": "rdp"})
    assert v.decision == "no_referral" and v.level == "ok"
    assert [line.key for line in v.card] == ["card.model", "card.not_validated", "card.privacy", "card.not_calibrated"]
    assert v.card[0].values == {"version": 4, "date": "2026-11-30"}
    assert v.card[1].warn and v.card[3].warn
    assert v.card[2].values["text"] == "ε = 7.50, δ = 1e-05 (RDP)"


def test_the_clients_decision_and_card_are_shown_as_given():
    card = SimpleNamespace(version=4, created="2026-11-30", validated=True, sensitivity=0.9149, specificity=0.8,
                           validation_source="APTOS test split", epsilon=7.501, delta=1e-5, accountant="prv",
                           test_build=False, calibrated=True, temperature=1.734)
    v = view(diagnosis(decision="uncertain_refer", p_referable=0.39, reason="39% on grades 2-4", card=card,
                       patient_id="P-1", eye="left", operator="Amina", local_time="2026-11-30 10:00 +0300"))
    assert (v.decision, v.level, v.p_referable, v.reason) == ("uncertain_refer", "warn", 0.39, "39% on grades 2-4")
    validated = v.card[1]
    assert validated.key == "card.validated" and validated.values["sensitivity"] == 91   # rounded down, never up
    assert v.card[2].values["text"] == "ε = 7.51, δ = 1e-05 (PRV)"                     # rounded up, never down
    assert v.card[3].key == "card.calibrated" and v.card[3].values["temperature"] == "1.73"
    assert [line.key for line in v.workflow] == ["result.patient", "result.eye_left", "result.operator", "result.time"]


@pytest.mark.parametrize("privacy,key", [({"epsilon": 1.0, "delta": 1e-5, "seeded": True}, "card.test_build"),
                                         ({"epsilon": 1.0, "delta": 1e-5, "test_build": True}, "card.test_build"),
                                         ({"epsilon": None}, "card.no_dp"), ({}, "card.no_dp")])
def test_a_test_build_or_no_dp_never_shows_epsilon_as_a_guarantee(privacy, key):
    line = card_lines(None, version=1, created="", privacy=privacy)[2]
    assert line.key == key and line.warn and "text" not in line.values
