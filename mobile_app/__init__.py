"""Dopamine's Kivy app: UI only. Everything that is not UI is `edge_client.api.EdgeClient`.

Importing this package does not import Kivy (only `mobile_app.app` and the screens do), so the
pure helpers (`percent`, `i18n`, `settings_store`) can be tested without a window.
"""
