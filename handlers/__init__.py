"""Lambda entry points: thin adapters from an event to engine calls. No business rules here."""
