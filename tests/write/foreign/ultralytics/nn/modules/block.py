from torch import nn


class DFL(nn.Module):
    pass


class C2f(nn.Module):
    pass


class Bottleneck(nn.Module):
    pass


class SPPF(nn.Module):
    pass
