"""What is stored: the typed schema and its history, the codec, migrations, the store."""
