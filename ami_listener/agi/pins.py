"""PIN checks for the card IVR (filled in by the card commit)."""


class PinGuard:
    def __init__(self, client, keys, settings) -> None:
        self.client, self.keys, self.settings = client, keys, settings
