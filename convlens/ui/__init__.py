"""The only Streamlit-aware code of the library: cached wrappers, shared state and widgets."""
