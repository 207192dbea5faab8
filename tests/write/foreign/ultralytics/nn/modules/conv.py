from torch import nn


class Conv(nn.Module):
    pass


class Concat(nn.Module):
    pass
