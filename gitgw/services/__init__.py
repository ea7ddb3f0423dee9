"""Layer 4: services that combine concepts into what commands and daemons do."""
