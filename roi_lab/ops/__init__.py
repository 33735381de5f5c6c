"""The ops: ROIAlign (torchvision / mmcv semantics), CropAndResize (TensorFlow semantics), FPN pooling."""

# Refuse (with an InputValueError) any op output of more elements than this: 2**28 elements, 1 GiB of
# float32. Raise it if you really mean to pool more in one call.
MAX_OUTPUT_ELEMENTS = 1 << 28
