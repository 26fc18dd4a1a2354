"""ocishim: an OCI runtime seccomp shim that answers ENOSYS for syscalls a profile cannot know."""

__version__ = "0.1.0"
