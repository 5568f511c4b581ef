"""ImageNet classifiers: the real offline MobileNetV2 (Coral TFLite), any timm model, the CGN
invariant ensemble."""
