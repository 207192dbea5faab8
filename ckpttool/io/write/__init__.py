"""Writers: torch archives and safetensors streamed into atomic temporaries, verified by reading back."""
