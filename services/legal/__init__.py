"""Legal aid (masar.v1.LegalAidService, port 50053): lawyers, legal aid
associations and court care cells take a survivor's matters, record
protection orders and hearings, and close each matter with an outcome."""
