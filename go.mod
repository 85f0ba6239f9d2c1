module github.com/pubsublock/pubsublock

go 1.26
