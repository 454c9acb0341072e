"""Entry point for python-for-android and kivy-ios builds (they run `main.py`); the same as
`python -m mobile_app` on a desktop."""
from mobile_app.__main__ import main

if __name__ == "__main__":
    main([])
