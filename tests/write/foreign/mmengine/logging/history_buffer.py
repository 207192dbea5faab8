"""mmengine's ``HistoryBuffer``: the message hub pickles it, and its statistics methods bound to the class."""


class HistoryBuffer:
    @classmethod
    def min(cls, buffer):
        return min(buffer._log_history)

    @classmethod
    def max(cls, buffer):
        return max(buffer._log_history)

    @classmethod
    def current(cls, buffer):
        return buffer._log_history[-1]

    @classmethod
    def mean(cls, buffer):
        return sum(buffer._log_history) / len(buffer._log_history)
