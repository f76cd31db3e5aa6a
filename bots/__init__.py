"""Ready-made bots built on the oracle package."""
