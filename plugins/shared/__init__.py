"""Model parts two domains share (the VGG style loss), below both."""
