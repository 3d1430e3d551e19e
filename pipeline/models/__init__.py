from .factory import ModelBundle, available_architectures, build, state_dict_hash

__all__ = ["ModelBundle", "available_architectures", "build", "state_dict_hash"]
