// placeholder: the widget
