"""bioimage.io model packages: export, description and reading back."""
