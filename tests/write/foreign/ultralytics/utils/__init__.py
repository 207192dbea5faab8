import types


class IterableSimpleNamespace(types.SimpleNamespace):
    pass
