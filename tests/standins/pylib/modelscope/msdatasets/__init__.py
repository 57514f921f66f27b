class MsDataset:
    @staticmethod
    def load(name, split="train"):
        raise ConnectionError(f"stand-in: no hub here, cannot load {name!r}")
