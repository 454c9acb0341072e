"""Render python-for-android's real AndroidManifest template, as its build.py does in a dist.

Run in a subprocess with the pinned python-for-android (and its own dependencies) first on
PYTHONPATH:  python p4a_render.py DIST_DIR ARGS_JSON
DIST_DIR is laid out as p4a's Bootstrap.prepare_build_dir does for the sdl2 bootstrap (common,
then _sdl_common, then sdl2); ARGS_JSON is the argument list buildozer passes to build.py.
Writes DIST_DIR/src/main/AndroidManifest.xml with build.py's own parser, helpers and render().
"""
import importlib.util
import json
import sys
from pathlib import Path

dist, argv = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
sys.argv = ["build.py"]
spec = importlib.util.spec_from_file_location("build", dist / "build.py")
build = importlib.util.module_from_spec(spec)
import os  # noqa: E402

os.chdir(dist)                       # build.py reads dist_info.json and templates/ from here
spec.loader.exec_module(build)
args = build.create_argument_parser().parse_args(argv)
# What parse_args_and_make_package does before make_package renders the manifest:
args.permissions = build.parse_permissions(args.permissions)
args.manifest_orientation = build.get_manifest_orientation(args.orientation, args.manifest_orientation)
if build.is_sdl_bootstrap():
    args.sdl_orientation_hint = build.get_sdl_orientation_hint(args.orientation)
# ... and what make_package does (numeric version, empty lists) just before render():
version_code = 0
for part in args.version.split("."):
    version_code = version_code * 100 + int(part)
args.numeric_version = args.numeric_version or f"10{args.min_sdk_version}{version_code}"
args.add_activity = args.add_activity or []
args.activity_launch_mode = args.activity_launch_mode or ""
render_args = {"args": args, "service": False, "service_data": [], "android_api": int(os.environ["ANDROID_API"]),
               "debug": "debug" in args.build_mode, "native_services": args.native_services}
if build.is_sdl_bootstrap():
    render_args["url_scheme"] = "kivy"
build.render("AndroidManifest.tmpl.xml", "src/main/AndroidManifest.xml", **render_args)
print("rendered", dist / "src/main/AndroidManifest.xml")
