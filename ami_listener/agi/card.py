"""The calling-card IVR (filled in by the card commit)."""


class CardIvr:
    def __init__(self, pins) -> None:
        self.pins = pins

    async def run(self, session, scripts) -> None:
        raise NotImplementedError
