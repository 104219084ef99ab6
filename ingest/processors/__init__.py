"""Steps that run after the engines, on a document's page layouts: furniture (running headers, page
numbers) marked across pages, figure crops saved beside the document. Steps an engine calls while it
reads a page (reading order, orientation, ruled tables) live with the engines in `engines/`."""
