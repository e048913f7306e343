"""The tools that build the workbook (its book), apart from the notebooks' package `helpers`."""
