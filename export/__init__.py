"""Export a trained checkpoint to on-device models: ONNX, TFLite and Core ML, fp32 and int8.

`python -m export all --checkpoint RUN/model.pt --out DIST` writes the models, a parity report
against torch and a signed manifest (docs/CONTRACTS.md, "Manifest").
"""


class ExportError(Exception):
    """A bad input or a failed check the user can act on; the CLI prints it as one line."""
