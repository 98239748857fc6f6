return {'ok', tok, exp}
