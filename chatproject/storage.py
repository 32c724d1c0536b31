"""
Static files as deployed: WhiteNoise's compressed files with hashed names, and
the imports between the room page's ES modules (static/chat/) rewritten to those
hashed names too.

Without the rewriting, the hashed main.js would import the plain-named siblings
(``./timeline.js``), which WhiteNoise serves without a long cache lifetime, and
a browser holding an older main.js could run it with newer modules after a
deployment.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    # Django's rewriting of `import ... from "./x.js";` and `export ... from`
    # (off by default; it needs the statements to end with a semicolon).
    support_js_module_import_aggregation = True
