from torch import nn


class Detect(nn.Module):
    pass
