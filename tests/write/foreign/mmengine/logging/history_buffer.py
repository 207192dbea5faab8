"""mmengine's ``HistoryBuffer``: the message hub pickles it and references to its statistics methods."""


class HistoryBuffer:
    def min(self):
        return min(self._log_history)

    def max(self):
        return max(self._log_history)

    def current(self):
        return self._log_history[-1]

    def mean(self):
        return sum(self._log_history) / len(self._log_history)
