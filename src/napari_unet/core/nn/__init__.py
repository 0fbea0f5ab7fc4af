"""The network and everything that touches Keras: the U-Net, its losses, train steps and devices."""
