"""The only part of ROI Lab that imports streamlit and plotly: cached loaders, figure builders, widgets."""
