"""python-for-android hook (buildozer.spec `p4a.hook`): declare the app's FileProvider.

The camera capture intent needs a content:// URI the camera app may write to; FileProvider
(androidx.core) gives one for a file in our private cache. p4a's manifest template has no
option for a <provider> element, so this inserts it into the generated AndroidManifest.xml
before gradle assembles the APK. Not run here (no Android SDK in this environment): checked
only by reading p4a's hook interface; see docs/MOBILE.md.
"""
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


def before_apk_assemble(toolchain):
    """Insert the <provider> once, just before </application>."""
    dist = Path(toolchain._dist.dist_dir)
    manifest = dist / "src" / "main" / "AndroidManifest.xml"
    text = manifest.read_text(encoding="utf-8")
    if "androidx.core.content.FileProvider" in text:
        return
    package = text.split('package="', 1)[1].split('"', 1)[0]
    manifest.write_text(text.replace("</application>", PROVIDER.format(package=package) + "    </application>", 1),
                        encoding="utf-8")
