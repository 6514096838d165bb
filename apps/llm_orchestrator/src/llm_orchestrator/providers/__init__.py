"""Clients of the dialogue's external providers: the four chat LLMs, Cohere embed, Intelistyle."""
