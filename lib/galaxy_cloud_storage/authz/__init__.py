"""Cloud authorization records: what they hold, where their secrets live, who may use them."""
