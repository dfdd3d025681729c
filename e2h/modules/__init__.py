from e2h.modules.generator import GeneratorModule

__all__ = ["GeneratorModule"]
