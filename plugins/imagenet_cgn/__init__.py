"""The ImageNet CGN (issue 6): BigGAN-deep mechanisms, U2-Net masks, training, counterfactual
datasets for the cgn-ensemble classifier."""
