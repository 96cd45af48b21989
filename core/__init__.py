"""cityeye: smart-parking and traffic camera analytics for a city's Intelligent Operation Center."""

__version__ = "0.1.0"
