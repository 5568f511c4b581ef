"""The MNIST world's benchmarks: Table 3 OOD accuracy, GradCAM IoU, generator quality."""
