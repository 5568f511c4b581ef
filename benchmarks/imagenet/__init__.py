"""The ImageNet world's benchmarks: cue-conflict, IN-9, ImageNet-A/-R/-Sketch,
Stylized-ImageNet, GradCAM IoU on natural images."""
