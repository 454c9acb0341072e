"""python-for-android hook (buildozer.spec `p4a.hook`): declare the app's FileProvider.

The camera capture intent and the share sheet need content:// URIs other apps may read or
write; androidx's FileProvider gives them for files in our private cache (only cache/photos/
and cache/exports/, res/xml/dopamine_file_paths.xml). p4a's manifest template has no option for
a <provider> element inside <application>, so this inserts it into the AndroidManifest.xml that
p4a rendered, before gradle assembles the package.

The package name (the provider's authority is `<package>.fileprovider`, which
mobile_app/pickers/android.py asks for) is read from p4a's own arguments (`--package`, which
buildozer passes from package.domain + package.name): p4a's templates stopped writing a
`package=` attribute into the manifest in late 2023. tests/mobile_app/test_p4a_manifest.py runs
this hook on the manifest that the pinned p4a release renders with this app's buildozer.spec.
"""
from __future__ import annotations

from pathlib import Path

PROVIDER = """
        <provider
            android:name="androidx.core.content.FileProvider"
            android:authorities="{package}.fileprovider"
            android:exported="false"
            android:grantUriPermissions="true">
            <meta-data
                android:name="android.support.FILE_PROVIDER_PATHS"
                android:resource="@xml/dopamine_file_paths" />
        </provider>
"""


class HookError(RuntimeError):
    """The build cannot go on: the message names what is missing."""


def package_from_args(args: list[str]) -> str:
    """The value of `--package X` or `--package=X` in p4a's build arguments.

    Raises:
        HookError: no --package among them.
    """
    for i, arg in enumerate(args):
        if arg == "--package" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--package="):
            return arg.split("=", 1)[1]
    raise HookError("p4a_hook: no --package in python-for-android's arguments (buildozer passes it from "
                    "package.domain and package.name in buildozer.spec)")


def add_provider(manifest: Path, package: str) -> bool:
    """Insert the <provider> once, just before </application>. Returns False if it was there.

    Raises:
        HookError: the manifest has no </application>.
    """
    text = manifest.read_text(encoding="utf-8")
    if "androidx.core.content.FileProvider" in text:
        return False
    if "</application>" not in text:
        raise HookError(f"p4a_hook: {manifest} has no </application> to add the FileProvider to")
    manifest.write_text(text.replace("</application>", PROVIDER.format(package=package) + "    </application>", 1),
                        encoding="utf-8")
    return True


def before_apk_assemble(toolchain):
    """p4a calls this after rendering the manifest (build.py) and before gradle runs."""
    package = package_from_args(list(toolchain.args.unknown_args))
    add_provider(Path(toolchain._dist.dist_dir) / "src" / "main" / "AndroidManifest.xml", package)
