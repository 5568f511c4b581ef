"""The MNIST world: CGN, DCGAN and the reference CNN."""
