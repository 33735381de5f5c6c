"""The ops: ROIAlign (torchvision / mmcv semantics), CropAndResize (TensorFlow semantics), FPN pooling."""
