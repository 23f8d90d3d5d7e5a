"""Wire models of the OpenAI API (requests and responses), named as OpenAI names them."""
