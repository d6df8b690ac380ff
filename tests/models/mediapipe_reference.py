"""Run the original TFLite selfie model through MediaPipe's own inference (the ImageSegmenter task API).

Why a script: ``mediapipe==0.10.21`` pins numpy<2 and protobuf<5, so it lives in its own venv
(``.venv-mediapipe/``) and this file runs under that venv's interpreter, never inside pytest's process.

    python mediapipe_reference.py MODEL.tflite IMAGES.npz OUT.npz

IMAGES.npz holds uint8 RGB images of the model's input size (256x256), so MediaPipe's own resize is the identity
and OUT.npz holds the raw model output (confidence mask, float32 [H, W]) for each array name.
"""

import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core import base_options


def main(model_path: str, images_path: str, out_path: str) -> None:
    options = vision.ImageSegmenterOptions(
        base_options=base_options.BaseOptions(model_asset_path=model_path),
        output_confidence_masks=True,
        output_category_mask=False,
    )
    images = np.load(images_path)
    masks = {}
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        for name in images.files:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(images[name]))
            result = segmenter.segment(image)
            masks[name] = result.confidence_masks[0].numpy_view().astype(np.float32).copy()
    np.savez(out_path, **masks)


if __name__ == "__main__":
    main(*sys.argv[1:4])
